"""Routing an accepted Stripe event (ADR 0024): an echo of what the engine already knows is
settled without Temporal, an event that needs action is one signal to its subscription (with
a re-read there when its snapshot may be stale), and everything the rule cannot place takes
the `stripe_event` workflow. Then the subscription's own rule for when to re-read."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

import billing.subscription as m
from billing.stripe_events import (
    HANDLED_EVENT_TYPES,
    KnownInvoice,
    Route,
    event_refs,
    handling_for,
    route_event,
)

TENANT = "11111111-1111-1111-1111-111111111111"
OTHER = "22222222-2222-2222-2222-222222222222"
OPEN = KnownInvoice("inv-1", TENANT, "sub-1", "open", 0)
ATTEMPTED = replace(OPEN, attempt_count=1)
PAID = replace(OPEN, status="paid")


def _invoice(status: str = "open", tenant: str = TENANT) -> dict[str, object]:
    return {"id": "in_1", "object": "invoice", "status": status, "customer": "cus_1",
            "metadata": {"invoice_id": "inv-1", "tenant_id": tenant}}  # fmt: skip


def _charge() -> dict[str, object]:
    return {"id": "ch_1", "object": "charge", "invoice": "in_1", "customer": "cus_1"}


@pytest.mark.parametrize(
    ("event_type", "obj", "known", "route", "reread"),
    [
        # A payment reported: final, signalled without a re-read; an echo once settled here.
        ("invoice.paid", _invoice("paid"), OPEN, Route.SIGNAL, False),
        ("invoice.payment_succeeded", _invoice("paid"), ATTEMPTED, Route.SIGNAL, False),
        ("invoice.updated", _invoice("paid"), OPEN, Route.SIGNAL, False),
        ("invoice.paid", _invoice("paid"), PAID, Route.NO_ACTION, False),
        (
            "invoice.payment_succeeded",
            _invoice("paid"),
            replace(OPEN, status="void"),
            Route.NO_ACTION,
            False,
        ),  # fmt: skip
        # A failure: an echo when the engine attempted it; else signalled, re-read there.
        ("invoice.payment_failed", _invoice(), ATTEMPTED, Route.NO_ACTION, False),
        ("charge.failed", _charge(), ATTEMPTED, Route.NO_ACTION, False),
        ("invoice.payment_failed", _invoice(), OPEN, Route.SIGNAL, True),
        ("payment_intent.payment_failed", _charge(), OPEN, Route.SIGNAL, True),
        # Invoice events that report no payment: the engine made them.
        ("invoice.finalized", _invoice(), OPEN, Route.NO_ACTION, False),
        ("invoice.voided", _invoice("void"), OPEN, Route.NO_ACTION, False),
        (
            "invoice.marked_uncollectible",
            _invoice("uncollectible"),
            ATTEMPTED,
            Route.NO_ACTION,
            False,
        ),  # fmt: skip
        # A payment succeeded on an invoice still open here: is it paid? Re-read there.
        ("charge.succeeded", _charge(), OPEN, Route.SIGNAL, True),
        ("payment_intent.succeeded", _charge(), ATTEMPTED, Route.SIGNAL, True),
        ("charge.succeeded", _charge(), PAID, Route.NO_ACTION, False),
        # What the rule cannot place takes the workflow.
        ("invoice.paid", _invoice("paid"), None, Route.WORKFLOW, False),
        ("invoice.paid", _invoice("paid", tenant=OTHER), OPEN, Route.WORKFLOW, False),
        (
            "invoice.paid",
            _invoice("paid"),
            replace(OPEN, subscription_id=None),
            Route.WORKFLOW,
            False,
        ),  # fmt: skip
        ("charge.refunded", _charge(), PAID, Route.WORKFLOW, False),
        ("charge.dispute.created", _charge(), PAID, Route.WORKFLOW, False),
        (
            "payment_method.attached",
            {"id": "pm_1", "customer": "cus_1"},
            None,
            Route.WORKFLOW,
            False,
        ),  # fmt: skip
    ],
)
def test_routing(
    event_type: str, obj: dict[str, object], known: KnownInvoice | None, route: Route, reread: bool
) -> None:
    routing = route_event(event_type, event_refs(event_type, obj), known)
    assert (routing.route, routing.reread) == (route, reread)
    assert (routing.detail is not None) == (route is Route.NO_ACTION)


@pytest.mark.parametrize("event_type", sorted(HANDLED_EVENT_TYPES))
def test_only_signalled_types_are_routed(event_type: str) -> None:
    """Only the `signal` handling is ever settled or signalled at acceptance: cards, refunds,
    disputes and deleted customers keep their workflow, whatever the invoice's state. (Types
    the engine does not handle, such as `invoice.created`, are settled `ignored` before any
    routing.)"""
    for known in (None, OPEN, ATTEMPTED, PAID):
        for status in ("draft", "open", "paid", "void"):
            obj = _invoice(status) if event_type.startswith("invoice.") else _charge()
            routing = route_event(event_type, event_refs(event_type, obj), known)
            if handling_for(event_type).value != "signal":
                assert routing.route is Route.WORKFLOW


NOW = datetime(2026, 3, 1, tzinfo=UTC)


def _state(*, dunning: tuple[str, ...] = (), seen: tuple[str, ...] = ()) -> m.SubscriptionState:
    from tests.unit.test_subscription_machine import ACTIVE

    invoice = m.OpenInvoice("inv-1", "in_1", 4900, 1)
    return replace(ACTIVE, open_invoices=(invoice,), dunning=dunning, seen_event_ids=seen)


@pytest.mark.parametrize(
    ("event", "state_kwargs", "needed"),
    [
        (m.StripeEvent("e1", "invoice.payment_failed", "inv-1", "in_1", "open"), {}, True),
        (m.StripeEvent("e1", "charge.succeeded", None, "in_1"), {}, True),
        # The dunning run gets a payment forwarded: it re-reads too, but the signal is still
        # checked first, so a stale failure never reaches it as news.
        (m.StripeEvent("e1", "charge.succeeded", "inv-1"), {"dunning": ("inv-1",)}, True),
        (m.StripeEvent("e1", "invoice.paid", "inv-1", "in_1", "paid"), {}, False),
        (m.StripeEvent("e1", "invoice.updated", "inv-1", "in_1", "paid"), {}, False),
        (m.StripeEvent("e1", "invoice.payment_failed", "inv-9", "in_9", "open"), {}, False),
        (m.StripeEvent("e1", "invoice.payment_failed", "inv-1"), {"seen": ("e1",)}, False),
        (m.StripeEvent("e1", "payment_method.updated", payment_method_id="pm_1"), {}, False),
    ],
)
def test_the_subscription_rereads_only_what_it_would_act_on(
    event: m.StripeEvent, state_kwargs: dict[str, tuple[str, ...]], needed: bool
) -> None:
    assert m.reread_needed(_state(**state_kwargs), event) is needed
