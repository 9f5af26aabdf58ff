"""Which Stripe events the engine handles and what each one refers to (pure: plain dicts in).

Stripe delivers at least once and in any order, so this module only *reads* an event: it says
what kind of handling the type gets and which objects the event points at. Deciding what the
event changes is the receiving workflow's job, after the object was re-read from Stripe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID


class EventHandling(StrEnum):
    # Routed to the subscription workflow of the invoice/customer it concerns.
    SIGNAL = "signal"
    # Updates a local projection (payment method details, customer link), then signals.
    PROJECT = "project"
    # Recorded and acknowledged only (the engine owns subscription state: ADR 0004).
    RECORD = "record"
    # Not a type the engine knows: stored and acknowledged.
    IGNORE = "ignore"
    # A dispute on a payment: the invoice it paid is found in Stripe, then marked (ADR 0021).
    DISPUTE = "dispute"


INVOICE_EVENTS = frozenset(
    {
        "invoice.paid",
        "invoice.payment_succeeded",
        "invoice.payment_failed",
        "invoice.finalized",
        "invoice.updated",
        "invoice.voided",
        "invoice.marked_uncollectible",
    }
)
PAYMENT_EVENTS = frozenset(
    {
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "charge.succeeded",
        "charge.failed",
        "charge.refunded",
    }
)
DISPUTE_EVENTS = frozenset(
    {"charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed"}
)
PAYMENT_METHOD_EVENTS = frozenset(
    {
        "payment_method.attached",
        "payment_method.updated",
        "payment_method.automatically_updated",
    }
)
CUSTOMER_DELETED = "customer.deleted"
# A charge refunded, by the engine or in the Stripe dashboard: projected as credit notes
# (ADR 0020), then routed like the other payment events.
CHARGE_REFUNDED = "charge.refunded"
# A Stripe credit note, by the engine or in the Stripe dashboard: one on an open invoice made
# in the dashboard is projected as the engine's credit note (ADR 0020).
CREDIT_NOTE_CREATED = "credit_note.created"
SUBSCRIPTION_PREFIX = "customer.subscription."

HANDLED_EVENT_TYPES = (
    INVOICE_EVENTS
    | PAYMENT_EVENTS
    | PAYMENT_METHOD_EVENTS
    | DISPUTE_EVENTS
    | {CUSTOMER_DELETED, CREDIT_NOTE_CREATED}
)


def handling_for(event_type: str) -> EventHandling:
    if event_type in DISPUTE_EVENTS:
        return EventHandling.DISPUTE
    if event_type in (CHARGE_REFUNDED, CREDIT_NOTE_CREATED):
        return EventHandling.PROJECT
    if event_type in INVOICE_EVENTS or event_type in PAYMENT_EVENTS:
        return EventHandling.SIGNAL
    if event_type in PAYMENT_METHOD_EVENTS or event_type == CUSTOMER_DELETED:
        return EventHandling.PROJECT
    if event_type.startswith(SUBSCRIPTION_PREFIX):
        return EventHandling.RECORD
    return EventHandling.IGNORE


@dataclass(frozen=True)
class EventRefs:
    """What an event points at, read defensively from the object (shapes vary by API version)."""

    object_id: str | None
    stripe_customer_id: str | None
    stripe_invoice_id: str | None
    stripe_payment_method_id: str | None
    # From the metadata the engine writes on Stripe objects.
    tenant_id: str | None
    subscription_id: str | None
    invoice_id: str | None
    failure_message: str | None
    amount_paid: int | None
    hosted_invoice_url: str | None
    invoice_status: str | None
    card: CardFacts | None


@dataclass(frozen=True)
class CardFacts:
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None


def metadata_uuid(value: str | None) -> UUID | None:
    """An engine id read from Stripe metadata: None when absent or not a UUID (metadata is
    free text anyone with the Stripe account can edit)."""
    try:
        return UUID(value) if value else None
    except ValueError:
        return None


def _id(value: Any) -> str | None:
    """An expandable field: either an id string or an object with an `id`."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping):
        inner = value.get("id")
        return inner if isinstance(inner, str) and inner else None
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    # bool is an int subclass; a float amount would be a money bug: both are refused.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _failure_message(event_type: str, obj: Mapping[str, Any]) -> str | None:
    if event_type.startswith("charge."):
        return _str(obj.get("failure_message"))
    error = obj.get("last_payment_error") or obj.get("last_finalization_error")
    if isinstance(error, Mapping):
        return _str(error.get("message"))
    return None


def _invoice_of(event_type: str, obj: Mapping[str, Any]) -> str | None:
    if event_type.startswith("invoice."):
        return _id(obj.get("id"))
    # Older API versions put the invoice on charges and payment intents; current ones do not
    # (payments hang off the invoice), so the engine's metadata is the other way in.
    return _id(obj.get("invoice")) or _str(_metadata(obj).get("stripe_invoice_id"))


def _card(obj: Mapping[str, Any]) -> CardFacts | None:
    card = obj.get("card")
    if not isinstance(card, Mapping):
        return None
    return CardFacts(
        brand=_str(card.get("brand")),
        last4=_str(card.get("last4")),
        exp_month=_int(card.get("exp_month")),
        exp_year=_int(card.get("exp_year")),
    )


def event_refs(event_type: str, obj: Mapping[str, Any]) -> EventRefs:
    meta = _metadata(obj)
    object_id = _id(obj.get("id"))
    is_invoice = event_type.startswith("invoice.")
    is_pm = event_type in PAYMENT_METHOD_EVENTS
    if event_type == CUSTOMER_DELETED:
        customer = object_id
    else:
        customer = _id(obj.get("customer"))
    return EventRefs(
        object_id=object_id,
        stripe_customer_id=customer,
        stripe_invoice_id=_invoice_of(event_type, obj),
        stripe_payment_method_id=object_id if is_pm else _id(obj.get("payment_method")),
        tenant_id=_str(meta.get("tenant_id")),
        subscription_id=_str(meta.get("subscription_id")),
        invoice_id=_str(meta.get("invoice_id")),
        failure_message=_failure_message(event_type, obj),
        amount_paid=_int(obj.get("amount_paid")) if is_invoice else None,
        hosted_invoice_url=_str(obj.get("hosted_invoice_url")) if is_invoice else None,
        invoice_status=_str(obj.get("status")) if is_invoice else None,
        card=_card(obj) if is_pm else None,
    )


def event_object(event: Mapping[str, Any]) -> Mapping[str, Any]:
    data = event.get("data")
    obj = data.get("object") if isinstance(data, Mapping) else None
    return obj if isinstance(obj, Mapping) else {}


# Routing at acceptance (ADR 0024): most events a billing day brings echo the engine's own calls
# and need nothing; those that need action reach their subscription in one signal.

# A collection failed: an echo when the engine made an attempt itself (it knows the outcome).
FAILURE_EVENTS = frozenset(
    {"invoice.payment_failed", "charge.failed", "payment_intent.payment_failed"}
)
# The invoice is paid, whatever arrives later (a paid invoice never becomes unpaid).
PAID_INVOICE_EVENTS = frozenset({"invoice.paid", "invoice.payment_succeeded"})
SETTLED_STATUSES = frozenset({"paid", "void"})


class Route(StrEnum):
    # Stored and acknowledged: the engine already knows what it reports.
    NO_ACTION = "no_action"
    # One signal to the invoice's subscription workflow.
    SIGNAL = "signal"
    # The `stripe_event` workflow: resolve, project, re-read, signal, retry, dead-letter.
    WORKFLOW = "workflow"


@dataclass(frozen=True)
class KnownInvoice:
    """The engine's invoice an event names (by the engine's metadata or the Stripe id)."""

    invoice_id: str
    tenant_id: str
    subscription_id: str | None
    status: str
    attempt_count: int


@dataclass(frozen=True)
class Routing:
    route: Route
    # SIGNAL: the snapshot may be stale (Stripe does not order deliveries): the subscription
    # re-reads the invoice from Stripe before acting on it, if it would act.
    reread: bool = False
    detail: str | None = None


def route_event(event_type: str, refs: EventRefs, known: KnownInvoice | None) -> Routing:
    """Where an accepted event goes. Only invoice and payment events about an invoice the
    engine has are routed here; everything else (cards, refunds, disputes, events the engine
    cannot place) goes through the `stripe_event` workflow as before."""
    if handling_for(event_type) is not EventHandling.SIGNAL or known is None:
        return Routing(Route.WORKFLOW)
    if refs.tenant_id is not None and refs.tenant_id != known.tenant_id:
        return Routing(Route.WORKFLOW)  # metadata that disagrees with the books: resolve it
    if known.subscription_id is None:
        return Routing(Route.WORKFLOW)
    if known.status in SETTLED_STATUSES:
        return Routing(Route.NO_ACTION, detail=f"no action: the invoice is already {known.status}")
    if event_type in PAID_INVOICE_EVENTS or refs.invoice_status == "paid":
        return Routing(Route.SIGNAL)
    if event_type in FAILURE_EVENTS:
        if known.attempt_count > 0:
            return Routing(
                Route.NO_ACTION, detail="no action: the engine's own collection attempt failed"
            )
        return Routing(Route.SIGNAL, reread=True)
    if event_type in INVOICE_EVENTS:
        return Routing(Route.NO_ACTION, detail="no action: the invoice event reports no payment")
    return Routing(Route.SIGNAL, reread=True)  # a payment succeeded: is the invoice paid?


@dataclass(frozen=True)
class ChargeRefund:
    """One refund listed on a refunded charge."""

    id: str
    amount: int
    # The engine's own refunds carry their credit note's id in the metadata.
    credit_note_id: str | None


def charge_refunds(obj: Mapping[str, Any]) -> list[ChargeRefund]:
    """The refunds a `charge.refunded` event's charge lists (`refunds.data`), read defensively:
    an entry without an id or an integer amount is skipped."""
    refunds = obj.get("refunds")
    data = refunds.get("data") if isinstance(refunds, Mapping) else None
    found = []
    for entry in data if isinstance(data, list) else []:
        if not isinstance(entry, Mapping):
            continue
        refund_id, amount = _str(entry.get("id")), _int(entry.get("amount"))
        if refund_id is None or amount is None or amount <= 0:
            continue
        if _str(entry.get("status")) in ("failed", "canceled"):
            continue
        found.append(ChargeRefund(refund_id, amount, _str(_metadata(entry).get("credit_note_id"))))
    return found


@dataclass(frozen=True)
class StripeCreditNote:
    """A Stripe credit note that lowered what an unpaid invoice asks for."""

    id: str
    stripe_invoice_id: str
    amount: int
    # The engine's own carry their credit note's id.
    credit_note_id: str | None


def prepayment_credit_note(obj: Mapping[str, Any]) -> StripeCreditNote | None:
    """The credit note in a `credit_note.created` event when it lowered an unpaid invoice's
    amount due (`pre_payment`, issued, a positive amount), else None. A credit note on a paid
    invoice gives money back as a refund (seen in `charge.refunded`) or as Stripe customer
    balance, which the engine does not keep: not projected here, so nothing counts twice."""
    note_id, invoice = _id(obj.get("id")), _id(obj.get("invoice"))
    if note_id is None or invoice is None or _str(obj.get("type")) != "pre_payment":
        return None
    if _str(obj.get("status")) not in (None, "issued"):
        return None
    amount = _int(obj.get("pre_payment_amount")) or _int(obj.get("amount"))
    if amount is None or amount <= 0:
        return None
    return StripeCreditNote(note_id, invoice, amount, _str(_metadata(obj).get("credit_note_id")))


@dataclass(frozen=True)
class DisputeFacts:
    """What a dispute event says: the dispute, the payment it disputes, its Stripe status."""

    dispute_id: str
    payment_intent_id: str | None
    charge_id: str | None
    status: str
    amount: int | None
    reason: str | None


def dispute_facts(obj: Mapping[str, Any]) -> DisputeFacts | None:
    """None when the object is not a usable dispute (no id, or no status)."""
    dispute_id, status = _id(obj.get("id")), _str(obj.get("status"))
    if dispute_id is None or status is None:
        return None
    return DisputeFacts(
        dispute_id=dispute_id,
        payment_intent_id=_id(obj.get("payment_intent")),
        charge_id=_id(obj.get("charge")),
        status=status,
        amount=_int(obj.get("amount")),
        reason=_str(obj.get("reason")),
    )
