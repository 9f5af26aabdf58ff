"""What each Stripe event type gets, and what an event points at, across API versions."""

from __future__ import annotations

import pytest

from billing.stripe_events import (
    EventHandling,
    StripeCreditNote,
    event_object,
    event_refs,
    handling_for,
    prepayment_credit_note,
)
from workflows.shared_io import RetrySchedule


@pytest.mark.parametrize(
    ("event_type", "handling"),
    [
        ("invoice.paid", EventHandling.SIGNAL),
        ("invoice.payment_succeeded", EventHandling.SIGNAL),
        ("invoice.payment_failed", EventHandling.SIGNAL),
        ("invoice.finalized", EventHandling.SIGNAL),
        ("invoice.updated", EventHandling.SIGNAL),
        ("invoice.voided", EventHandling.SIGNAL),
        ("invoice.marked_uncollectible", EventHandling.SIGNAL),
        ("payment_intent.succeeded", EventHandling.SIGNAL),
        ("payment_intent.payment_failed", EventHandling.SIGNAL),
        ("charge.succeeded", EventHandling.SIGNAL),
        ("charge.failed", EventHandling.SIGNAL),
        ("charge.refunded", EventHandling.PROJECT),
        ("charge.dispute.created", EventHandling.DISPUTE),
        ("charge.dispute.closed", EventHandling.DISPUTE),
        ("payment_method.attached", EventHandling.PROJECT),
        ("payment_method.updated", EventHandling.PROJECT),
        ("payment_method.automatically_updated", EventHandling.PROJECT),
        ("customer.deleted", EventHandling.PROJECT),
        ("customer.subscription.created", EventHandling.RECORD),
        ("customer.subscription.deleted", EventHandling.RECORD),
        ("customer.created", EventHandling.IGNORE),
        ("invoice.created", EventHandling.IGNORE),
        ("radar.early_fraud_warning.created", EventHandling.IGNORE),
    ],
)
def test_handling_by_type(event_type: str, handling: EventHandling) -> None:
    assert handling_for(event_type) is handling


def test_invoice_refs_come_from_the_engine_metadata() -> None:
    refs = event_refs(
        "invoice.payment_failed",
        {
            "id": "in_1",
            "customer": {"id": "cus_1", "object": "customer"},  # expanded
            "status": "open",
            "amount_paid": 0,
            "hosted_invoice_url": "https://pay/in_1",
            "last_finalization_error": None,
            "metadata": {"invoice_id": "i1", "tenant_id": "t1", "subscription_id": "s1"},
        },
    )
    assert (refs.stripe_invoice_id, refs.stripe_customer_id) == ("in_1", "cus_1")
    assert (refs.invoice_id, refs.tenant_id, refs.subscription_id) == ("i1", "t1", "s1")
    assert (refs.invoice_status, refs.amount_paid, refs.hosted_invoice_url) == (
        "open",
        0,
        "https://pay/in_1",
    )


def test_charge_refs_in_old_and_current_shapes() -> None:
    old = event_refs(
        "charge.failed",
        {"id": "ch_1", "invoice": "in_9", "customer": "cus_1", "failure_message": "declined"},
    )
    assert (old.stripe_invoice_id, old.failure_message) == ("in_9", "declined")
    # Current API versions dropped `invoice` from charges: nothing to re-read, no crash.
    current = event_refs("charge.failed", {"id": "ch_1", "customer": "cus_1", "metadata": {}})
    assert current.stripe_invoice_id is None
    assert current.amount_paid is None  # only invoices carry amounts the engine trusts


def test_payment_method_refs_keep_card_facts_only() -> None:
    refs = event_refs(
        "payment_method.updated",
        {
            "id": "pm_1",
            "customer": "cus_1",
            "card": {
                "brand": "visa",
                "last4": "4242",
                "exp_month": 1,
                "exp_year": 2030,
                "fingerprint": "secret-ish",
            },
        },
    )
    assert refs.stripe_payment_method_id == "pm_1"
    assert refs.card is not None
    assert (refs.card.brand, refs.card.last4, refs.card.exp_month, refs.card.exp_year) == (
        "visa",
        "4242",
        1,
        2030,
    )


def test_customer_deleted_points_at_the_customer_itself() -> None:
    refs = event_refs("customer.deleted", {"id": "cus_1", "metadata": {"tenant_id": "t1"}})
    assert (refs.stripe_customer_id, refs.tenant_id) == ("cus_1", "t1")


@pytest.mark.parametrize("payload", [{}, {"data": None}, {"data": {"object": "x"}}])
def test_event_object_tolerates_odd_envelopes(payload: dict[str, object]) -> None:
    assert event_object(payload) == {}


def test_backoff_doubles_and_is_capped() -> None:
    schedule = RetrySchedule(max_attempts=8, initial_backoff_seconds=2, max_backoff_seconds=20)
    assert [schedule.backoff_seconds(n) for n in range(1, 6)] == [2, 4, 8, 16, 20]


def test_every_handling_has_an_initial_inbox_status() -> None:
    """A new handling without one would answer Stripe with a 500 (a KeyError at the endpoint)."""
    from api.routes import webhooks

    assert set(webhooks._INITIAL_STATUS) == set(EventHandling)


_NOTE = {"id": "cn_1", "object": "credit_note", "invoice": "in_1", "type": "pre_payment",
         "status": "issued", "amount": 1500, "metadata": {}}  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, StripeCreditNote("cn_1", "in_1", 1500, None)),
        ({"pre_payment_amount": 1200}, StripeCreditNote("cn_1", "in_1", 1200, None)),
        ({"metadata": {"credit_note_id": "x"}}, StripeCreditNote("cn_1", "in_1", 1500, "x")),
        ({"invoice": {"id": "in_2"}}, StripeCreditNote("cn_1", "in_2", 1500, None)),
        ({"status": None}, StripeCreditNote("cn_1", "in_1", 1500, None)),
        ({"type": "post_payment"}, None),  # money back: charge.refunded's business
        ({"status": "void"}, None),
        ({"invoice": None}, None),
        ({"id": None}, None),
        ({"amount": 0}, None),
        ({"amount": -5}, None),
        ({"amount": 15.0}, None),  # a float amount is a money bug
        ({"amount": True}, None),
    ],
)
def test_a_prepayment_credit_note_is_read_defensively(
    changes: dict[str, object], expected: StripeCreditNote | None
) -> None:
    assert prepayment_credit_note({**_NOTE, **changes}) == expected


def test_credit_notes_are_projected() -> None:
    assert handling_for("credit_note.created") is EventHandling.PROJECT
