"""The subscription as a pure state machine: `step(state, event, now) -> (state, effects)`.

`SubscriptionState` is everything a subscription knows, typed (datetimes, enums, the plan as a
`Plan`). An event is something that happened or was asked for: a deadline reached, a command,
the outcome of an effect (an invoice opened, a collection paid or failed), a Stripe event, the
end of a dunning run. `step` decides, and returns what must happen as data (`Effect`s); it does
no I/O and reads no clock: `now` is the business instant the caller passes in.

The subscription workflow interprets the effects, in order. An effect that yields an outcome
(`IssueInvoice` yields `InvoiceOpened`, `Collect` yields `InvoicePaid` or `CollectionFailed`)
steps the machine again at once, and the effects that step returns run before the rest of the
list; `Then(event)` steps it again after the effects before it. So a `RecordChange` records
the status the subscription has when it is written, which a collection started by the same
step may have moved (a renewal whose payment fails is recorded as `active -> past_due`).

A preview is `step` with its effects discarded: the `Outcome` effect carries what a command
decided (its kind, when it takes effect and the invoice it issues now), and `upcoming_invoice`
reads the next renewal from the state `step` returned. The workflow's update handlers run the
same call, so a preview is the bill for the same instant.

`TRANSITIONS` is the table of status changes; `tests/unit/test_subscription_machine.py` checks
every (status, event) pair against it and runs random event sequences through `step`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from billing import notifications as notice
from billing.catalog import Interval, Plan
from billing.discounts import BASE_KINDS, OVERAGE_KINDS, Discount, open_period, take_off
from billing.errors import InvalidTransition
from billing.invoicing import (
    InvoiceDraft,
    Line,
    LineKind,
    base_line,
    compose_invoice,
    proration_lines,
)
from billing.lifecycle import Command, LifecycleFacts, Status, check_cancel, check_command
from billing.periods import BusinessClock, card_expires_at, period_bounds
from billing.plan_changes import next_invoice, price_change

TRIAL_ENDING_NOTICE = timedelta(days=3)
CARD_EXPIRING_NOTICE = timedelta(days=30)
# How old a preview's proration_date may be when the change is made (wall time).
PRORATION_DATE_MAX_AGE = timedelta(hours=1)
# Event ids remembered for deduplication (Stripe redelivers within days, not thousands of events).
SEEN_EVENTS_KEPT = 200
PAID_EVENTS = frozenset({"invoice.paid", "invoice.payment_succeeded"})
FAILED_EVENTS = frozenset({"invoice.payment_failed"})
PAYMENT_METHOD_EVENTS = frozenset(
    {"payment_method.attached", "payment_method.updated", "payment_method.automatically_updated"}
)
TIMINGS = frozenset({"default", "immediate", "period_end"})

# ------------------------------------------------------------------------------------ the state


@dataclass(frozen=True, slots=True)
class SubscribedPlan:
    """A plan version as subscribed: its catalog row id and version, and the plan itself."""

    plan_id: str
    version: int
    plan: Plan

    @property
    def code(self) -> str:
        return self.plan.code


@dataclass(frozen=True, slots=True)
class Card:
    payment_method_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True, slots=True)
class OpenInvoice:
    """An invoice issued and not yet seen paid; `attempts` counts collections started."""

    invoice_id: str
    stripe_invoice_id: str | None
    total: int
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class Receipt:
    """Stripe's view of an invoice after a write or a collection."""

    stripe_invoice_id: str
    status: str
    amount_due: int
    amount_paid: int
    hosted_invoice_url: str | None = None
    invoice_pdf: str | None = None


@dataclass(frozen=True, slots=True)
class Terms:
    """What is fixed for a subscription's life (snapshotted at sign-up), and which recorded
    behaviours the running code has (`notices`, `grace`: the workflow's patch markers)."""

    subscription_id: str
    interval: Interval
    trial_days: int
    trial_end_policy: str = "pause"  # pause | cancel, at trial end without a card
    cancel_after_days: int = 7
    time_scale: float = 1.0
    notices: bool = True
    grace: bool = True
    # A cancellation at period end asked during a trial ends the subscription at trial end,
    # unbilled (before: the trial converted and the first period was billed, then canceled).
    trial_cancel_at_end: bool = True


@dataclass(frozen=True, slots=True)
class PendingCharge:
    """A one-off charge waiting for the next invoice the subscription issues (ADR 0022)."""

    key: str
    description: str
    amount: int


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    terms: Terms
    status: Status
    plan: SubscribedPlan
    clock: BusinessClock
    customer_id: str | None = None
    # The billing clock: periods are `period_bounds(anchor, interval, period_index)`.
    anchor: datetime | None = None
    period_index: int = 0
    trial_end: datetime | None = None
    cancel_at_period_end: bool = False
    canceled_at: datetime | None = None
    paused_at: datetime | None = None
    resume_at: datetime | None = None
    pending_plan: SubscribedPlan | None = None
    credit_balance: int = 0
    has_payment_method: bool = False
    card: Card | None = None
    open_invoices: tuple[OpenInvoice, ...] = ()
    invoices_issued: int = 0
    # Open invoices a dunning run is chasing: it is their only writer while it runs.
    dunning: tuple[str, ...] = ()
    # When the subscription is canceled for non-payment unless paid first.
    cancel_due_at: datetime | None = None
    trial_ending_notice_at: datetime | None = None
    card_expiring_notice_at: datetime | None = None
    seen_event_ids: tuple[str, ...] = ()
    # One-off charges for the next invoice, and the keys of every charge added (idempotency).
    pending_charges: tuple[PendingCharge, ...] = ()
    charge_keys: tuple[str, ...] = ()
    # Keys of every credit added to the balance by a credit note (ADR 0020).
    credit_keys: tuple[str, ...] = ()
    # The coupon's discount, active or spent (at most one active: ADR 0023).
    discount: Discount | None = None
    # Sequence numbers the interpreter advances as it writes (projection versions, change keys).
    version: int = 0
    invoice_version: int = 0
    change_seq: int = 0

    @property
    def currency(self) -> str:
        return self.plan.plan.currency

    @property
    def period(self) -> tuple[datetime, datetime]:
        """The open billing period (only once anchored)."""
        assert self.anchor is not None, "no billing period before activation"
        return period_bounds(self.anchor, self.terms.interval, self.period_index)

    def open_period(self) -> tuple[datetime, datetime] | None:
        """The period usage is metered against: the billing period, or the trial (as Stripe)."""
        if self.anchor is not None:
            return self.period
        if self.status is Status.TRIALING and self.trial_end is not None:
            return self.trial_end - timedelta(days=self.terms.trial_days), self.trial_end
        return None

    def invoice(self, invoice_id: str) -> OpenInvoice | None:
        return next((i for i in self.open_invoices if i.invoice_id == invoice_id), None)


def new_subscription(terms: Terms, plan: SubscribedPlan, clock: BusinessClock) -> SubscriptionState:
    return SubscriptionState(terms=terms, status=Status.INCOMPLETE, plan=plan, clock=clock)


# ------------------------------------------------------------------------------------ deadlines


class DeadlineKind(StrEnum):
    """What a deadline is for; the value is what the Temporal UI shows for its timer."""

    CARD_EXPIRING_NOTICE = "card expiring notice"
    TRIAL_ENDING_NOTICE = "trial ending notice"
    TRIAL_END = "trial ends"
    CANCEL_FOR_NONPAYMENT = "cancel for non-payment"
    PAUSE_END = "pause ends"
    CANCEL_AT_PERIOD_END = "cancel at period end"
    RENEWAL = "renewal"


@dataclass(frozen=True, slots=True)
class Deadline:
    at: datetime
    kind: DeadlineKind


def billing_deadline(state: SubscriptionState) -> Deadline | None:
    """The billing clock's next deadline (what the UI shows as next billing)."""
    s = state
    if s.status is Status.TRIALING:
        return Deadline(s.trial_end, DeadlineKind.TRIAL_END) if s.trial_end else None
    if s.status is Status.PAUSED:
        return Deadline(s.resume_at, DeadlineKind.PAUSE_END) if s.resume_at else None
    if s.status in (Status.ACTIVE, Status.PAST_DUE):
        end = s.period[1]
        if s.cancel_due_at is not None and s.cancel_due_at <= end:
            return Deadline(s.cancel_due_at, DeadlineKind.CANCEL_FOR_NONPAYMENT)
        kind = DeadlineKind.CANCEL_AT_PERIOD_END if s.cancel_at_period_end else DeadlineKind.RENEWAL
        return Deadline(end, kind)
    return None


def next_deadline(state: SubscriptionState) -> Deadline | None:
    """The earliest deadline; on a tie, notices come before the billing clock."""
    if state.status is Status.CANCELED:
        return None
    candidates = [
        Deadline(state.card_expiring_notice_at, DeadlineKind.CARD_EXPIRING_NOTICE)
        if state.card_expiring_notice_at
        else None,
        Deadline(state.trial_ending_notice_at, DeadlineKind.TRIAL_ENDING_NOTICE)
        if state.trial_ending_notice_at
        else None,
        billing_deadline(state),
    ]
    present = [d for d in candidates if d is not None]
    return min(present, key=lambda d: d.at) if present else None


# --------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class CustomerCreated:
    customer_id: str


@dataclass(frozen=True, slots=True)
class SignedUp:
    actor: str


@dataclass(frozen=True, slots=True)
class DeadlineReached:
    kind: DeadlineKind
    at: datetime
    # Overage of the closing period (renewal, cancel at period end), priced by the usage side.
    usage: tuple[Line, ...] = ()


@dataclass(frozen=True, slots=True)
class ChangePlan:
    plan: SubscribedPlan
    actor: str
    timing: str = "default"
    # The instant prices are prorated at (from a preview); None: now.
    proration_date: datetime | None = None


@dataclass(frozen=True, slots=True)
class Cancel:
    actor: str
    at_period_end: bool = False
    usage: tuple[Line, ...] = ()  # overage of the period so far, for an immediate cancel


@dataclass(frozen=True, slots=True)
class UndoCancel:
    actor: str


@dataclass(frozen=True, slots=True)
class Pause:
    actor: str
    resume_at: datetime | None = None
    usage: tuple[Line, ...] = ()


@dataclass(frozen=True, slots=True)
class Resume:
    actor: str


@dataclass(frozen=True, slots=True)
class SetPaymentMethod:
    """The request, checked before the card is attached (then `PaymentMethodSet`)."""

    payment_method_id: str
    actor: str


@dataclass(frozen=True, slots=True)
class AddCharge:
    """An operator's one-off charge: invoiced now (collected, and chased by dunning, like any
    invoice) or added to the next invoice. `key` makes it idempotent."""

    key: str
    description: str
    amount: int
    invoice_now: bool
    actor: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ApplyDiscount:
    """A coupon applied after sign-up: it covers the periods that open from now on."""

    discount: Discount
    actor: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class AddCredit:
    """A credit note's amount added to the credit balance, which the next invoices use before
    the card (ADR 0020). `key` makes it idempotent."""

    key: str
    amount: int
    actor: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentMethodSet:
    card: Card
    actor: str | None = None  # None: attached at sign-up, nothing recorded


@dataclass(frozen=True, slots=True)
class InvoiceOpened:
    invoice_id: str
    total: int
    receipt: Receipt


@dataclass(frozen=True, slots=True)
class _CollectionOutcome:
    invoice_id: str
    attempt: int
    total: int
    receipt: Receipt
    outcome: str
    decline_code: str | None = None
    failure_message: str | None = None


@dataclass(frozen=True, slots=True)
class InvoicePaid(_CollectionOutcome):
    pass


@dataclass(frozen=True, slots=True)
class CollectionFailed(_CollectionOutcome):
    pass


@dataclass(frozen=True, slots=True)
class DunningFinished:
    invoice_id: str
    outcome: str  # recovered | paid_out_of_band | exhausted | voided_elsewhere
    attempts: int = 0
    last_attempt: int = 0
    invoice_version: int = 0
    exhausted_at: datetime | None = None  # wall clock


@dataclass(frozen=True, slots=True)
class StripeEvent:
    event_id: str
    event_type: str
    invoice_id: str | None = None
    stripe_invoice_id: str | None = None
    invoice_status: str | None = None
    amount_paid: int | None = None
    hosted_invoice_url: str | None = None
    payment_method_id: str | None = None


@dataclass(frozen=True, slots=True)
class Canceled:
    """Self-addressed (through `Then`): the subscription ends once its final invoice ran."""

    at: datetime
    actor: str
    from_status: Status
    reason: str
    clear_pending: bool = True


@dataclass(frozen=True, slots=True)
class Paused:
    at: datetime
    actor: str
    from_status: Status
    resume_at: datetime | None


Event = (
    CustomerCreated
    | SignedUp
    | DeadlineReached
    | ChangePlan
    | Cancel
    | UndoCancel
    | Pause
    | Resume
    | SetPaymentMethod
    | PaymentMethodSet
    | InvoiceOpened
    | InvoicePaid
    | CollectionFailed
    | DunningFinished
    | StripeEvent
    | Canceled
    | Paused
    | AddCharge
    | AddCredit
    | ApplyDiscount
)

# -------------------------------------------------------------------------------------- effects


@dataclass(frozen=True, slots=True)
class IssueInvoice:
    """Write the invoice, mirror it to Stripe; yields `InvoiceOpened`."""

    draft: InvoiceDraft
    reason: str
    key: str  # the billing key's suffix: one invoice per (subscription, key), ever
    period: tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class Collect:
    """Attempt payment; yields `InvoicePaid` or `CollectionFailed`."""

    invoice_id: str
    stripe_invoice_id: str
    total: int
    attempt: int


@dataclass(frozen=True, slots=True)
class ProjectInvoice:
    invoice_id: str
    status: str
    receipt: Receipt
    attempt: int = 0
    outcome: str | None = None
    decline_code: str | None = None
    failure_message: str | None = None


@dataclass(frozen=True, slots=True)
class RecordChange:
    """One row of the subscription's history; its `to_status` is the status when written.
    `with_invoice`: details get the id of the invoice this step issued (None if none)."""

    kind: str
    actor: str
    from_status: Status
    at: datetime
    from_plan: str | None = None
    to_plan: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    with_invoice: bool = False


@dataclass(frozen=True, slots=True)
class Project:
    """Write the subscription's row (and the UI's search attributes) from the current state."""


@dataclass(frozen=True, slots=True)
class Publish:
    """Refresh the UI's search attributes only."""


@dataclass(frozen=True, slots=True)
class Notify:
    event_type: str
    message_id: str
    payload: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StartDunning:
    invoice_id: str
    stripe_invoice_id: str
    amount_due: int
    currency: str
    hosted_invoice_url: str | None
    first_attempt: int


@dataclass(frozen=True, slots=True)
class ForwardCardUpdate:
    invoice_id: str
    event_id: str
    payment_method_id: str | None


@dataclass(frozen=True, slots=True)
class ForwardPayment:
    invoice_id: str
    event_id: str


@dataclass(frozen=True, slots=True)
class OpenGrace:
    invoice_id: str


@dataclass(frozen=True, slots=True)
class CloseGrace:
    invoice_id: str
    resolution: str  # paid | voided | canceled


@dataclass(frozen=True, slots=True)
class Then:
    event: Event


@dataclass(frozen=True, slots=True)
class ContinueAsNew:
    """A boundary was crossed: start a fresh history carrying the state."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a command decided, for its caller (no I/O): the API's answer and the preview."""

    effective_at: datetime
    kind: str | None = None  # upgrade | downgrade | lateral, for a plan change
    scheduled: bool = False
    draft: InvoiceDraft | None = None  # the invoice the command bills now


Effect = (
    IssueInvoice
    | Collect
    | ProjectInvoice
    | RecordChange
    | Project
    | Publish
    | Notify
    | StartDunning
    | ForwardCardUpdate
    | ForwardPayment
    | OpenGrace
    | CloseGrace
    | Then
    | ContinueAsNew
    | Outcome
)

# The status changes `step` can make, by event type (tests check every step against it).
TRANSITIONS: dict[str, frozenset[tuple[Status, Status]]] = {
    "SignedUp": frozenset(
        {(Status.INCOMPLETE, Status.TRIALING), (Status.INCOMPLETE, Status.ACTIVE)}
    ),
    "DeadlineReached": frozenset(
        {
            (Status.TRIALING, Status.ACTIVE),
            (Status.TRIALING, Status.PAUSED),
            (Status.TRIALING, Status.CANCELED),
            (Status.PAUSED, Status.ACTIVE),
            (Status.ACTIVE, Status.CANCELED),
            (Status.PAST_DUE, Status.CANCELED),
        }
    ),
    "Resume": frozenset({(Status.PAUSED, Status.ACTIVE)}),
    "Canceled": frozenset(
        {(s, Status.CANCELED) for s in (Status.TRIALING, Status.ACTIVE, Status.PAST_DUE)}
        | {(Status.PAUSED, Status.CANCELED)}
    ),
    "Paused": frozenset({(Status.ACTIVE, Status.PAUSED), (Status.PAST_DUE, Status.PAUSED)}),
    "CollectionFailed": frozenset({(Status.ACTIVE, Status.PAST_DUE)}),
    "InvoicePaid": frozenset({(Status.PAST_DUE, Status.ACTIVE)}),
    "StripeEvent": frozenset({(Status.PAST_DUE, Status.ACTIVE), (Status.ACTIVE, Status.PAST_DUE)}),
    "DunningFinished": frozenset({(Status.PAST_DUE, Status.ACTIVE)}),
}

# ----------------------------------------------------------------------------------- the checks


# Where a one-off charge may be added: a subscription that bills (or will, after its trial).
CHARGEABLE = frozenset({Status.TRIALING, Status.ACTIVE, Status.PAST_DUE})


def check(state: SubscriptionState, event: Event, now: datetime) -> None:
    """Raise `InvalidTransition` (the reason the API shows, HTTP 409) when a command is refused
    in this state; other events are never refused."""
    s = state
    facts = LifecycleFacts(s.status, cancel_at_period_end=s.cancel_at_period_end)
    match event:
        case ChangePlan():
            check_command(Command.CHANGE_PLAN, facts)
            if event.timing not in TIMINGS:
                raise InvalidTransition(f"unknown timing {event.timing!r}")
            if event.plan.code == s.plan.code and event.plan.version == s.plan.version:
                raise InvalidTransition(f"the subscription is already on {event.plan.code}")
            if event.plan.plan.currency != s.currency:
                raise InvalidTransition("a plan change cannot switch currency")
            _check_proration_date(s, event.proration_date, now)
        case Cancel():
            check_cancel(facts, at_period_end=event.at_period_end)
        case UndoCancel():
            check_command(Command.UNDO_CANCEL, facts)
        case Pause():
            check_command(Command.PAUSE, facts)
            if event.resume_at is not None and event.resume_at <= now:
                raise InvalidTransition("resume_at must be in the future")
        case Resume():
            check_command(Command.RESUME, facts)
        case SetPaymentMethod():
            if s.customer_id is None:
                raise InvalidTransition("the subscription is still being set up; retry in a moment")
            check_command(Command.SET_PAYMENT_METHOD, facts)
            if not event.payment_method_id.strip():
                raise InvalidTransition("payment_method_id is empty")
        case PaymentMethodSet():
            check_command(Command.SET_PAYMENT_METHOD, facts)
        case ApplyDiscount():
            if s.status not in CHARGEABLE and s.status is not Status.PAUSED:
                raise InvalidTransition(f"a {s.status.value} subscription takes no discount")
            if s.discount is not None and s.discount.active:
                raise InvalidTransition(
                    f"the subscription has a discount already ({s.discount.code}); one at a time"
                )
            if event.discount.used or event.discount.covered_start is not None:
                raise InvalidTransition("a discount starts unused")
        case AddCredit():
            if type(event.amount) is not int or event.amount <= 0:
                raise InvalidTransition("a credit is a positive integer of minor units")
            if s.status not in CHARGEABLE and s.status is not Status.PAUSED:
                raise InvalidTransition(f"a {s.status.value} subscription takes no credit")
        case AddCharge():
            if type(event.amount) is not int or event.amount <= 0:
                raise InvalidTransition("a one-off charge is a positive integer of minor units")
            if s.status not in CHARGEABLE:
                raise InvalidTransition(f"a {s.status.value} subscription takes no new charges")
            if not event.description.strip() or not event.key.strip():
                raise InvalidTransition("a one-off charge needs a description and a key")
        case _:
            pass


def _check_proration_date(s: SubscriptionState, at: datetime | None, now: datetime) -> None:
    if at is None or s.anchor is None:
        return
    start, end = s.period
    if not start <= at <= min(end, now):
        raise InvalidTransition(
            "proration_date must lie in the current period and not in the future"
        )
    # A preview is good for an hour of the caller's time: an older instant would backdate the
    # change (a larger credit for an immediate downgrade).
    if at < now - PRORATION_DATE_MAX_AGE * s.terms.time_scale:
        raise InvalidTransition("proration_date is more than an hour old: preview the change again")


# ------------------------------------------------------------------------------------- the step

Step = tuple[SubscriptionState, list[Effect]]


def step(state: SubscriptionState, event: Event, now: datetime) -> Step:
    """Apply `event` at business instant `now`: the next state and what must happen, in order.
    A refused command raises `InvalidTransition` and changes nothing."""
    check(state, event, now)
    s = state
    match event:
        case CustomerCreated():
            return replace(s, customer_id=event.customer_id), []
        case SignedUp():
            return _signed_up(s, event, now)
        case DeadlineReached():
            return _deadline(s, event)
        case ChangePlan():
            return _change_plan(s, event, now)
        case Cancel():
            return _cancel(s, event, now)
        case UndoCancel():
            effects: list[Effect] = [
                Outcome(now),
                RecordChange("cancel_undone", event.actor, s.status, now),
                Project(),
            ]
            return replace(s, cancel_at_period_end=False), effects
        case Pause():
            return _pause(s, event, now)
        case Resume():
            s, effects = _activate(s, now, event.actor, Status.PAUSED, "resumed")
            return s, [Outcome(now), *effects, Publish()]
        case PaymentMethodSet():
            return _payment_method_set(s, event, now)
        case InvoiceOpened():
            return _invoice_opened(s, event)
        case InvoicePaid():
            return _invoice_paid(s, event)
        case CollectionFailed():
            return _collection_failed(s, event, now)
        case DunningFinished():
            return _dunning_finished(s, event, now)
        case StripeEvent():
            return _stripe_event(s, event, now)
        case Canceled():
            return _canceled(s, event)
        case Paused():
            return _paused(s, event)
        case SetPaymentMethod():
            return s, []  # checked only: the card is attached, then `PaymentMethodSet`
        case AddCharge():
            return _add_charge(s, event, now)
        case ApplyDiscount():
            details = {
                "coupon": event.discount.code,
                "periods": event.discount.periods,
                "reason": event.reason,
            }
            change = RecordChange("discount_applied", event.actor, s.status, now, details=details)
            return replace(s, discount=event.discount), [Outcome(now), change, Project()]
        case AddCredit():
            if event.key in s.credit_keys:
                return s, [Outcome(now)]
            s = replace(
                s,
                credit_balance=s.credit_balance + event.amount,
                credit_keys=(*s.credit_keys, event.key),
            )
            details = {"key": event.key, "amount": event.amount, "reason": event.reason}
            change = RecordChange("credit_added", event.actor, s.status, now, details=details)
            return s, [Outcome(now), change, Project()]
    raise TypeError(f"not a subscription event: {event!r}")


def upcoming_invoice(state: SubscriptionState) -> tuple[datetime | None, InvoiceDraft | None]:
    """The next renewal invoice with zero usage so far (overage is only known at close), on the
    plan that will be current then; none when the subscription ends with its trial."""
    s = state
    if _cancels_at_trial_end(s):
        return None, None
    at, draft = next_invoice(
        status=s.status,
        plan=(s.pending_plan or s.plan).plan,
        interval=s.terms.interval,
        trial_end=s.trial_end,
        anchor=s.anchor,
        period_index=s.period_index,
        cancel_at_period_end=s.cancel_at_period_end,
        credit_balance=s.credit_balance,
    )
    if draft is None or at is None:
        return at, draft
    # The discount of the period it opens, and the one-off charges waiting for it, as the bill
    # will show them.
    lines = [line for line in draft.lines if line.kind is not LineKind.CREDIT]
    off, _ = take_off(open_period(s.discount, at), lines, at, BASE_KINDS)
    lines += [*([off] if off else []), *_pending_lines(s)]
    return at, compose_invoice(s.currency, lines, s.credit_balance)


def usage_window(
    state: SubscriptionState, event: Event, now: datetime
) -> tuple[datetime, datetime] | None:
    """The stretch whose usage overage the event bills (the caller prices it into `usage`)."""
    s = state
    match event:
        case DeadlineReached(kind=DeadlineKind.RENEWAL | DeadlineKind.CANCEL_AT_PERIOD_END):
            return s.period
        case Cancel(at_period_end=False) if s.anchor is not None and s.status is not Status.PAUSED:
            return s.period[0], now
        case Pause():
            return s.period[0], now
    return None


# --------------------------------------------------------------------------------------- rules


def _issue(
    s: SubscriptionState,
    draft: InvoiceDraft,
    reason: str,
    key: str,
    period: tuple[datetime, datetime],
) -> Step:
    """Credit moves with the draft; an all-zero invoice produces no document (Stripe cannot
    collect zero anyway)."""
    s = replace(s, credit_balance=draft.credit_balance_after)
    if not draft.lines or draft.total == 0:
        return s, []
    return s, [IssueInvoice(draft, reason, key, period)]


def _add_charge(s: SubscriptionState, e: AddCharge, now: datetime) -> Step:
    """Invoice the charge now (its own invoice, collected and chased like any other) or keep it
    for the next invoice the subscription issues. The same key again changes nothing."""
    if e.key in s.charge_keys:
        return s, [Outcome(now, "one_off", not e.invoice_now, None)]
    s = replace(s, charge_keys=(*s.charge_keys, e.key))
    details = {
        "key": e.key,
        "amount": e.amount,
        "description": e.description,
        "invoiced": "now" if e.invoice_now else "next_invoice",
        "reason": e.reason,
    }
    record = RecordChange(
        "charge_added", e.actor, s.status, now, details=details, with_invoice=e.invoice_now
    )
    if not e.invoice_now:
        pending = PendingCharge(e.key, e.description, e.amount)
        s = replace(s, pending_charges=(*s.pending_charges, pending))
        return s, [Outcome(now, "one_off", True, None), record, Project()]
    line = Line(LineKind.ONE_OFF, e.description, e.amount)
    draft = compose_invoice(s.currency, [line], s.credit_balance)
    s, issued = _issue(s, draft, "manual", f"charge:{e.key}", (now, now))
    return s, [Outcome(now, "one_off", False, draft), *issued, record, Project()]


def _pending_lines(s: SubscriptionState) -> list[Line]:
    return [Line(LineKind.ONE_OFF, c.description, c.amount) for c in s.pending_charges]


def _notify(
    s: SubscriptionState, event_type: str, key: str, payload: dict[str, Any]
) -> list[Effect]:
    return [Notify(event_type, f"{event_type}:{key}", payload)] if s.terms.notices else []


def _signed_up(s: SubscriptionState, e: SignedUp, now: datetime) -> Step:
    # Whole seconds: anchors and trial ends read as clean instants in statements and the UI.
    at = now.replace(microsecond=0)
    if s.terms.trial_days <= 0:
        return _activate(s, at, e.actor, Status.INCOMPLETE, "activated")
    trial_end = at + timedelta(days=s.terms.trial_days)
    # A trial shorter than the notice gets its notice at once.
    notice_at = max(at, trial_end - TRIAL_ENDING_NOTICE) if s.terms.notices else None
    s = replace(s, status=Status.TRIALING, trial_end=trial_end, trial_ending_notice_at=notice_at)
    return s, [RecordChange("trial_started", e.actor, Status.INCOMPLETE, at), Project()]


def _activate(s: SubscriptionState, at: datetime, actor: str, before: Status, kind: str) -> Step:
    """Open period 0 anchored at `at` and bill its base fee in advance."""
    at = at.replace(microsecond=0)
    s = replace(
        s,
        # A change scheduled "at period end" during a trial applies from activation.
        plan=s.pending_plan or s.plan,
        pending_plan=None,
        status=Status.ACTIVE,
        anchor=at,
        period_index=0,
        trial_ending_notice_at=None,
        paused_at=None,
        resume_at=None,
    )
    period = s.period
    base = base_line(s.plan.plan, s.terms.interval, period)
    discount = open_period(s.discount, period[0])
    off, discount = take_off(discount, [base] if base else [], period[0], BASE_KINDS)
    lines = [*([base] if base else []), *([off] if off else []), *_pending_lines(s)]
    draft = compose_invoice(s.currency, lines, s.credit_balance)
    s = replace(s, pending_charges=(), discount=discount)
    s, effects = _issue(s, draft, "subscription_create", f"start:{period[0].isoformat()}", period)
    effects += [RecordChange(kind, actor, before, at), Project()]
    if kind != "resumed":
        effects += _notify(
            s,
            notice.SUBSCRIPTION_ACTIVATED,
            s.terms.subscription_id,
            {
                "subscription_id": s.terms.subscription_id,
                "plan_code": s.plan.code,
                "interval": s.terms.interval.value,
                "current_period_end": period[1].isoformat(),
            },
        )
    return s, effects


def _deadline(s: SubscriptionState, e: DeadlineReached) -> Step:
    at = e.at
    match e.kind:
        case DeadlineKind.CARD_EXPIRING_NOTICE:
            card = s.card
            assert card is not None
            effects = _notify(
                s,
                notice.PAYMENT_METHOD_EXPIRING,
                f"{card.payment_method_id}:{card.exp_year}-{card.exp_month}",
                {
                    "payment_method_id": card.payment_method_id,
                    "brand": card.brand,
                    "last4": card.last4,
                    "exp_month": card.exp_month,
                    "exp_year": card.exp_year,
                },
            )
            return replace(s, card_expiring_notice_at=None), [*effects, Publish()]
        case DeadlineKind.TRIAL_ENDING_NOTICE:
            if s.status is not Status.TRIALING:
                return replace(s, trial_ending_notice_at=None), []  # ended early: no notice
            trial_end = s.trial_end.isoformat() if s.trial_end else None
            effects = _notify(
                s,
                notice.SUBSCRIPTION_TRIAL_ENDING,
                f"{s.terms.subscription_id}:{trial_end}",
                {"subscription_id": s.terms.subscription_id, "trial_end": trial_end},
            )
            return replace(s, trial_ending_notice_at=None), [*effects, Publish()]
        case DeadlineKind.TRIAL_END:
            s, effects = _end_trial(s, at)
        case DeadlineKind.CANCEL_FOR_NONPAYMENT:
            return _cancel_for_nonpayment(s, at)
        case DeadlineKind.PAUSE_END:
            s, effects = _activate(s, at, "system", Status.PAUSED, "resumed")
            effects.append(Publish())
        case DeadlineKind.CANCEL_AT_PERIOD_END | DeadlineKind.RENEWAL:
            if s.cancel_at_period_end:
                closed = s.period
                draft = compose_invoice(s.currency, e.usage, s.credit_balance)
                s, effects = _issue(s, draft, "final", f"final:{closed[0].isoformat()}", closed)
                ending = Canceled(closed[1], "system", s.status, "canceled_at_period_end", False)
                return s, [*effects, Then(ending)]
            s, effects = _renew(s, e.usage)
    if s.status is not Status.CANCELED:
        effects.append(ContinueAsNew())
    return s, effects


def _end_trial(s: SubscriptionState, at: datetime) -> Step:
    if _cancels_at_trial_end(s):
        # The period a cancellation at period end waits for is the trial: nothing is billed.
        before = s.status
        s = replace(s, status=Status.CANCELED, canceled_at=at, cancel_at_period_end=False)
        effects: list[Effect] = [
            RecordChange("canceled", "system", before, at),
            Project(),
            *_canceled_notice(s, "canceled_at_period_end"),
        ]
    elif s.has_payment_method:
        s, effects = _activate(s, at, "system", Status.TRIALING, "trial_converted")
    elif s.terms.trial_end_policy == "cancel":
        s = replace(s, status=Status.CANCELED, canceled_at=at)
        effects = [
            RecordChange("trial_expired_canceled", "system", Status.TRIALING, at),
            Project(),
            *_canceled_notice(s, "trial_expired"),
        ]
    else:
        s = replace(s, status=Status.PAUSED, paused_at=at)
        effects = [RecordChange("trial_expired_paused", "system", Status.TRIALING, at), Project()]
    return s, [*effects, Publish()]


def _cancels_at_trial_end(s: SubscriptionState) -> bool:
    return s.status is Status.TRIALING and s.cancel_at_period_end and s.terms.trial_cancel_at_end


def _renew(s: SubscriptionState, usage: Sequence[Line]) -> Step:
    """Close the current period (overage in arrears) and open the next (base in advance)."""
    before, from_plan = s.status, s.plan.code
    # The closing period's overage takes that period's discount.
    usage_off, discount = take_off(s.discount, usage, s.period[0], OVERAGE_KINDS)
    # A scheduled downgrade takes effect with the new period.
    s = replace(
        s, plan=s.pending_plan or s.plan, pending_plan=None, period_index=s.period_index + 1
    )
    opened = s.period
    base = base_line(s.plan.plan, s.terms.interval, opened)
    discount = open_period(discount, opened[0])
    base_off, discount = take_off(discount, [base] if base else [], opened[0], BASE_KINDS)
    offs = [x for x in (base_off, usage_off) if x is not None]
    lines = [*([base] if base is not None else []), *usage, *offs, *_pending_lines(s)]
    draft = compose_invoice(s.currency, lines, s.credit_balance)
    s = replace(s, pending_charges=(), discount=discount)
    s, effects = _issue(s, draft, "subscription_cycle", f"cycle:{opened[0].isoformat()}", opened)
    kind = "plan_changed" if from_plan != s.plan.code else "renewed"
    effects += [
        RecordChange(kind, "system", before, opened[0], from_plan=from_plan, to_plan=s.plan.code),
        Project(),
    ]
    return s, effects


def _cancel_for_nonpayment(s: SubscriptionState, at: datetime) -> Step:
    effects: list[Effect] = (
        [CloseGrace(i.invoice_id, "canceled") for i in s.open_invoices] if s.terms.grace else []
    )
    before = s.status
    s = replace(
        s,
        status=Status.CANCELED,
        canceled_at=at,
        cancel_at_period_end=False,
        pending_plan=None,
        cancel_due_at=None,
    )
    effects += [
        RecordChange("canceled", "system", before, at, details={"reason": "nonpayment"}),
        Project(),
        *_canceled_notice(s, "nonpayment"),
    ]
    return s, effects


def _canceled_notice(s: SubscriptionState, reason: str) -> list[Effect]:
    sid = s.terms.subscription_id
    canceled_at = s.canceled_at.isoformat() if s.canceled_at else None
    return _notify(
        s,
        notice.SUBSCRIPTION_CANCELED,
        sid,
        {"subscription_id": sid, "canceled_at": canceled_at, "reason": reason},
    )


def _change_plan(s: SubscriptionState, e: ChangePlan, now: datetime) -> Step:
    at = e.proration_date or now
    priced = price_change(
        status=s.status,
        current=s.plan.plan,
        new=e.plan.plan,
        interval=s.terms.interval,
        timing=e.timing,
        at=at,
        period=s.period if s.anchor else None,
        credit_balance=s.credit_balance,
    )
    kind, at, draft = priced.kind.value, priced.effective_at, priced.invoice
    if draft is not None and s.anchor is not None:
        # Prorations belong to the open period: its discount (a percentage) applies.
        plain = [x for x in draft.lines if x.kind is not LineKind.CREDIT]
        off, _ = take_off(s.discount, plain, s.period[0], BASE_KINDS, percent_only=True)
        if off is not None:
            draft = compose_invoice(s.currency, [*plain, off], s.credit_balance)
    before, from_plan = s.status, s.plan.code
    effects: list[Effect] = [Outcome(at, kind, not priced.immediate, draft)]
    if not priced.immediate:
        effects += [
            RecordChange(
                "plan_change_scheduled",
                e.actor,
                before,
                at,
                from_plan=from_plan,
                to_plan=e.plan.code,
            ),
            Project(),
        ]
        return replace(s, pending_plan=e.plan), effects
    s = replace(s, plan=e.plan, pending_plan=None)
    if draft is not None:
        s = replace(s, change_seq=s.change_seq + 1)
        key = f"change:{s.change_seq}:{at.isoformat()}"
        s, issued = _issue(s, draft, "subscription_update", key, (at, s.period[1]))
        effects += issued
    effects += [
        RecordChange(
            "plan_changed",
            e.actor,
            before,
            at,
            from_plan=from_plan,
            to_plan=e.plan.code,
            details={"kind": kind},
            with_invoice=True,
        ),
        Project(),
    ]
    return s, effects


def _cancel(s: SubscriptionState, e: Cancel, now: datetime) -> Step:
    if e.at_period_end:
        trial_ends = s.trial_end if s.terms.trial_cancel_at_end and s.trial_end else now
        effective = s.period[1] if s.anchor else trial_ends
        effects: list[Effect] = [
            Outcome(effective, scheduled=True),
            RecordChange("cancel_scheduled", e.actor, s.status, now),
            Project(),
        ]
        return replace(s, cancel_at_period_end=True), effects
    draft = None
    effects = []
    if s.anchor is not None and s.status is not Status.PAUSED:
        # Final invoice: usage of the period so far, in arrears. Unused base time is not
        # refunded (ADR 0002).
        start = s.period[0]
        draft = compose_invoice(s.currency, e.usage, s.credit_balance)
        s, effects = _issue(s, draft, "final", f"final:{start.isoformat()}", (start, now))
    ending = Canceled(now, e.actor, s.status, "requested")
    return s, [Outcome(now, draft=draft), *effects, Then(ending)]


def _canceled(s: SubscriptionState, e: Canceled) -> Step:
    s = replace(
        s,
        status=Status.CANCELED,
        canceled_at=e.at,
        cancel_at_period_end=False,
        pending_plan=None if e.clear_pending else s.pending_plan,
    )
    effects: list[Effect] = [RecordChange("canceled", e.actor, e.from_status, e.at), Project()]
    return s, [*effects, *_canceled_notice(s, e.reason)]


def _pause(s: SubscriptionState, e: Pause, now: datetime) -> Step:
    # Pausing closes the period now: usage so far is billed, unused base time becomes credit;
    # resuming opens a fresh period anchored at the resume instant.
    start, end = s.period
    plan = s.plan.plan
    lines = [*e.usage, *proration_lines(plan, plan, s.terms.interval, (start, end), now)[:1]]
    draft = compose_invoice(s.currency, lines, s.credit_balance)
    s, effects = _issue(s, draft, "pause", f"pause:{now.isoformat()}", (start, now))
    ending = Paused(now, e.actor, s.status, e.resume_at)
    return s, [Outcome(now, draft=draft), *effects, Then(ending)]


def _paused(s: SubscriptionState, e: Paused) -> Step:
    s = replace(s, status=Status.PAUSED, paused_at=e.at, resume_at=e.resume_at, pending_plan=None)
    resume_at = e.resume_at.isoformat() if e.resume_at else None
    details = {"resume_at": resume_at}
    return s, [RecordChange("paused", e.actor, e.from_status, e.at, details=details), Project()]


def _payment_method_set(s: SubscriptionState, e: PaymentMethodSet, now: datetime) -> Step:
    card = e.card
    s = replace(s, has_payment_method=True)
    if s.terms.notices:
        # The warning timer follows the card on file: a new card replaces it.
        notice_at = card_expires_at(card.exp_year, card.exp_month) - CARD_EXPIRING_NOTICE
        s = replace(s, card=card, card_expiring_notice_at=max(notice_at, now))
    if e.actor is None:
        return s, []
    details = {"brand": card.brand, "last4": card.last4}
    effects: list[Effect] = [
        RecordChange("payment_method_set", e.actor, s.status, now, details=details)
    ]
    # A new card is the moment to retry what is owed: invoices under dunning are retried by
    # their dunning run (the only writer of their rows), the others here.
    event_id = f"sub:{s.terms.subscription_id}:change:{s.change_seq}"
    for invoice in s.open_invoices:
        if invoice.invoice_id in s.dunning:
            effects.append(ForwardCardUpdate(invoice.invoice_id, event_id, card.payment_method_id))
        elif invoice.stripe_invoice_id is not None:
            s, collect = _collect(s, invoice)
            effects.append(collect)
    return s, [*effects, Project()]


def _collect(s: SubscriptionState, invoice: OpenInvoice) -> tuple[SubscriptionState, Collect]:
    assert invoice.stripe_invoice_id is not None
    attempt = invoice.attempts + 1
    s = replace(
        s,
        open_invoices=tuple(
            replace(i, attempts=attempt) if i.invoice_id == invoice.invoice_id else i
            for i in s.open_invoices
        ),
    )
    return s, Collect(invoice.invoice_id, invoice.stripe_invoice_id, invoice.total, attempt)


def _invoice_opened(s: SubscriptionState, e: InvoiceOpened) -> Step:
    invoice = OpenInvoice(e.invoice_id, e.receipt.stripe_invoice_id, e.total)
    s = replace(s, open_invoices=(*s.open_invoices, invoice), invoices_issued=s.invoices_issued + 1)
    s, collect = _collect(s, invoice)
    return s, [ProjectInvoice(e.invoice_id, "open", e.receipt), collect]


def _projected_attempt(e: _CollectionOutcome, status: str) -> ProjectInvoice:
    return ProjectInvoice(
        e.invoice_id, status, e.receipt, e.attempt, e.outcome, e.decline_code, e.failure_message
    )


def _invoice_paid(s: SubscriptionState, e: InvoicePaid) -> Step:
    effects: list[Effect] = [_projected_attempt(e, "paid")]
    s = _settled(s, e.invoice_id)
    payload = {
        "invoice_id": e.invoice_id,
        "amount_paid": e.receipt.amount_paid,
        "currency": s.currency,
    }
    return s, [*effects, *_notify(s, notice.INVOICE_PAID, e.invoice_id, payload)]


def _collection_failed(s: SubscriptionState, e: CollectionFailed, now: datetime) -> Step:
    effects: list[Effect] = [_projected_attempt(e, e.receipt.status)]
    if s.status is Status.ACTIVE:
        s = replace(s, status=Status.PAST_DUE)
        details = {"invoice_id": e.invoice_id, "decline_code": e.decline_code}
        effects.append(
            RecordChange("payment_failed", "system", Status.ACTIVE, now, details=details)
        )
    if not s.terms.notices:
        return s, effects
    effects += _notify(
        s,
        notice.INVOICE_PAYMENT_FAILED,
        f"{e.invoice_id}:{e.attempt}",
        {
            "invoice_id": e.invoice_id,
            "amount_due": e.total,
            "currency": s.currency,
            "failure_message": e.failure_message,
            "hosted_invoice_url": e.receipt.hosted_invoice_url,
        },
    )
    if e.invoice_id not in s.dunning:
        # Its dunning run outlives this history; any later run reaches it by id (ADR 0005).
        effects.append(
            StartDunning(
                e.invoice_id,
                e.receipt.stripe_invoice_id,
                e.total,
                s.currency,
                e.receipt.hosted_invoice_url,
                e.attempt + 1,
            )
        )
        s = replace(s, dunning=(*s.dunning, e.invoice_id))
    if s.terms.grace:
        # Access continues until the grace window expires, then the tenant is suspended
        # until the invoice is paid (ADR 0006).
        effects.append(OpenGrace(e.invoice_id))
    return s, effects


def _settled(s: SubscriptionState, invoice_id: str) -> SubscriptionState:
    remaining = tuple(i for i in s.open_invoices if i.invoice_id != invoice_id)
    status = s.status
    if not remaining and status is Status.PAST_DUE:
        status = Status.ACTIVE
    # Paid before the cancel for non-payment came due: the subscription goes on.
    cancel_due_at = s.cancel_due_at if remaining else None
    return replace(s, open_invoices=remaining, status=status, cancel_due_at=cancel_due_at)


def _dunning_finished(s: SubscriptionState, e: DunningFinished, now: datetime) -> Step:
    if e.invoice_id not in s.dunning:
        return s, []  # not ours, or already applied
    s = replace(
        s,
        dunning=tuple(i for i in s.dunning if i != e.invoice_id),
        # The dunning run wrote the invoice row up to this version; later writes go above it.
        invoice_version=max(s.invoice_version, e.invoice_version),
    )
    before = s.status
    effects: list[Effect] = []
    if e.outcome == "exhausted":
        # The invoice stays owed (uncollectible can still be paid, e.g. on the hosted page): the
        # cancel is due after the policy's delay unless it is paid first.
        start = s.clock.business_at(e.exhausted_at) if e.exhausted_at else now
        due = start.replace(microsecond=0) + timedelta(days=s.terms.cancel_after_days)
        s = replace(
            s,
            cancel_due_at=min(due, s.cancel_due_at) if s.cancel_due_at else due,
            # The run's attempts count too: a later write must not lower attempt_count.
            open_invoices=tuple(
                replace(i, attempts=max(i.attempts, e.last_attempt))
                if i.invoice_id == e.invoice_id
                else i
                for i in s.open_invoices
            ),
        )
        kind = "dunning_exhausted"
    else:
        # recovered | paid_out_of_band | voided_elsewhere: nothing is owed on it any more.
        s = _settled(s, e.invoice_id)
        voided = e.outcome == "voided_elsewhere"
        if s.terms.grace:
            effects.append(CloseGrace(e.invoice_id, "voided" if voided else "paid"))
        kind = "invoice_voided" if voided else "payment_recovered"
    details = {
        "invoice_id": e.invoice_id,
        "outcome": e.outcome,
        "attempts": e.attempts,
        "cancel_due_at": s.cancel_due_at.isoformat() if s.cancel_due_at else None,
    }
    effects += [RecordChange(kind, "system", before, now, details=details), Project()]
    return s, effects


def reread_needed(s: SubscriptionState, e: StripeEvent) -> bool:
    """Whether an event's snapshot must be checked against Stripe before the machine acts on
    it (ADR 0024): a new event about an invoice still open here whose snapshot does not say
    paid; a payment may have overtaken it (Stripe does not order deliveries). A paid snapshot
    is final, and an event about an invoice settled here changes nothing."""
    if e.event_id in s.seen_event_ids or e.event_type in PAYMENT_METHOD_EVENTS:
        return False
    if e.event_type in PAID_EVENTS or e.invoice_status == "paid":
        return False
    return _open_invoice(s, e) is not None


def _open_invoice(s: SubscriptionState, e: StripeEvent) -> OpenInvoice | None:
    return next(
        (
            i
            for i in s.open_invoices
            if (e.invoice_id and i.invoice_id == e.invoice_id)
            or (e.stripe_invoice_id and i.stripe_invoice_id == e.stripe_invoice_id)
        ),
        None,
    )


def _stripe_event(s: SubscriptionState, e: StripeEvent, now: datetime) -> Step:
    if e.event_id in s.seen_event_ids:
        return s, []
    s = replace(s, seen_event_ids=(*s.seen_event_ids, e.event_id)[-SEEN_EVENTS_KEPT:])
    if e.event_type in PAYMENT_METHOD_EVENTS:
        forwards: list[Effect] = [
            ForwardCardUpdate(i, e.event_id, e.payment_method_id) for i in s.dunning
        ]
        return replace(s, has_payment_method=True), forwards
    invoice = _open_invoice(s, e)
    if invoice is None:
        return s, []  # not open here: already settled (a late failure changes nothing)
    paid = e.event_type in PAID_EVENTS or e.invoice_status == "paid"
    if invoice.invoice_id in s.dunning:
        # The dunning run owns the invoice while it chases it: it re-reads Stripe and stops;
        # its `DunningFinished` brings the outcome here.
        return s, [ForwardPayment(invoice.invoice_id, e.event_id)] if paid else []
    before = s.status
    effects: list[Effect] = []
    if paid:
        amount = e.amount_paid if e.amount_paid is not None else invoice.total
        receipt = Receipt(
            invoice.stripe_invoice_id or "", "paid", invoice.total, amount, e.hosted_invoice_url
        )
        effects.append(ProjectInvoice(invoice.invoice_id, "paid", receipt, invoice.attempts))
        s = _settled(s, invoice.invoice_id)
        if invoice.attempts > 0 and s.terms.grace:  # a failed collection opened its window
            effects.append(CloseGrace(invoice.invoice_id, "paid"))
        payload = {"invoice_id": invoice.invoice_id, "amount_paid": amount, "currency": s.currency}
        effects += _notify(s, notice.INVOICE_PAID, invoice.invoice_id, payload)
    elif e.event_type in FAILED_EVENTS and s.status is Status.ACTIVE:
        s = replace(s, status=Status.PAST_DUE)
    if s.status is not before:
        details = {"event_id": e.event_id, "invoice_id": invoice.invoice_id}
        effects += [
            RecordChange("payment_status", "stripe", before, now, details=details),
            Project(),
        ]
    return s, effects
