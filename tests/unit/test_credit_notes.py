"""What may be credited on an invoice, and how (ADR 0020): a paid invoice never gives back more
than was paid, an open invoice's amount due never goes below zero, in integers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.credit_notes import (
    CREDIT_BALANCE,
    REDUCE_AMOUNT_DUE,
    REFUND,
    Credited,
    CreditRefused,
    check_credit,
    credit_note_series,
    default_method,
    left_to_credit,
    refundable,
)


def _refunds(*amounts: int, status: str = "succeeded") -> list[Credited]:
    return [Credited(a, REFUND, status) for a in amounts]


def _reductions(*amounts: int, status: str = "succeeded") -> list[Credited]:
    return [Credited(a, REDUCE_AMOUNT_DUE, status) for a in amounts]


@pytest.mark.parametrize(
    ("status", "method", "paid", "due", "notes", "amount", "left"),
    [
        ("paid", REFUND, 4900, 4900, [], 2450, 2450),
        ("paid", REFUND, 4900, 4900, _refunds(2450), 2450, 0),
        ("paid", REFUND, 4900, 4900, _refunds(2450, 1000), 1450, 0),
        ("paid", CREDIT_BALANCE, 4900, 4900, _refunds(900), 4000, 0),
        ("paid", REFUND, 1, 1, [], 1, 0),
        # A refused refund gave nothing back.
        ("paid", REFUND, 4900, 4900, _refunds(4900, status="failed"), 4900, 0),
        # Lowering what was due before the payment is not a refund of it.
        ("paid", REFUND, 3900, 3900, _reductions(1000), 3900, 0),
        # An open invoice: the amount due (already lowered by applied credit notes) minus
        # those on their way.
        ("open", REDUCE_AMOUNT_DUE, 0, 25000, [], 10000, 15000),
        ("open", REDUCE_AMOUNT_DUE, 0, 15000, _reductions(10000), 15000, 0),
        ("open", REDUCE_AMOUNT_DUE, 0, 25000, _reductions(10000, status="pending"), 15000, 0),
        ("open", REDUCE_AMOUNT_DUE, 0, 25000, _reductions(25000, status="failed"), 25000, 0),
        ("uncollectible", REDUCE_AMOUNT_DUE, 0, 900, [], 900, 0),
    ],
)
def test_what_is_left_after_a_credit(
    status: str, method: str, paid: int, due: int, notes: list[Credited], amount: int, left: int
) -> None:
    assert check_credit(status, method, paid, due, notes, amount) == left


@pytest.mark.parametrize(
    ("status", "method", "paid", "due", "notes", "amount", "why"),
    [
        ("paid", REFUND, 4900, 4900, _refunds(2450), 2451, "more than is left"),
        ("paid", REFUND, 4900, 4900, _refunds(4900), 1, "more than is left"),
        ("open", REFUND, 0, 4900, [], 1, "only a paid invoice"),
        ("open", CREDIT_BALANCE, 0, 4900, [], 1, "only a paid invoice"),
        ("void", REFUND, 0, 0, [], 1, "only a paid invoice"),
        ("paid", REDUCE_AMOUNT_DUE, 4900, 4900, [], 1, "only an open invoice"),
        ("void", REDUCE_AMOUNT_DUE, 0, 4900, [], 1, "only an open invoice"),
        ("draft", REDUCE_AMOUNT_DUE, 0, 4900, [], 1, "only an open invoice"),
        ("open", REDUCE_AMOUNT_DUE, 0, 4900, _reductions(4000, status="pending"), 901, "more"),
        ("open", REDUCE_AMOUNT_DUE, 0, 0, [], 1, "more than is left"),
        ("open", "void_it", 0, 4900, [], 1, "unknown method"),
        ("paid", REFUND, 4900, 4900, [], 0, "positive integer"),
        ("paid", REFUND, 4900, 4900, [], -5, "positive integer"),
        ("paid", REFUND, 4900, 4900, [], 1.5, "positive integer"),
        ("open", REDUCE_AMOUNT_DUE, 0, 4900, [], True, "positive integer"),
    ],
)
def test_refused_credits_say_why(
    status: str,
    method: str,
    paid: int,
    due: int,
    notes: list[Credited],
    amount: object,
    why: str,
) -> None:
    with pytest.raises(CreditRefused, match=why):
        check_credit(status, method, paid, due, notes, amount)  # type: ignore[arg-type]


def test_the_method_by_default_follows_the_status() -> None:
    assert default_method("open") == REDUCE_AMOUNT_DUE
    assert default_method("uncollectible") == REDUCE_AMOUNT_DUE
    assert default_method("paid") == REFUND


@given(
    paid=st.integers(min_value=0, max_value=10**9),
    requests=st.lists(
        st.tuples(st.sampled_from([REFUND, CREDIT_BALANCE]), st.integers(-10, 10**9)),
        max_size=20,
    ),
)
def test_credits_accepted_in_any_order_never_exceed_what_was_paid(
    paid: int, requests: list[tuple[str, int]]
) -> None:
    notes: list[Credited] = []
    for method, amount in requests:
        try:
            left = check_credit("paid", method, paid, paid, notes, amount)
        except CreditRefused:
            continue
        notes.append(Credited(amount, method, "pending"))
        assert left == paid - sum(n.amount for n in notes)
        assert all(type(n.amount) is int for n in notes)
    assert sum(n.amount for n in notes) <= paid
    assert refundable(paid, [n.amount for n in notes]) == paid - sum(n.amount for n in notes)


@given(
    due=st.integers(min_value=0, max_value=10**9),
    requests=st.lists(
        st.tuples(st.integers(-10, 10**9), st.sampled_from(["apply", "fail", "wait"])),
        max_size=20,
    ),
)
def test_an_open_invoice_is_never_lowered_below_zero(
    due: int, requests: list[tuple[int, str]]
) -> None:
    """Credit notes accepted, then applied by Stripe (the amount due goes down), refused by it
    (they stop counting) or left on their way, in any order: what is due plus what is on its
    way never exceeds what was due, and never goes below zero."""
    amount_due = due
    notes: list[Credited] = []
    for amount, fate in requests:
        try:
            check_credit("open", REDUCE_AMOUNT_DUE, 0, amount_due, notes, amount)
        except CreditRefused:
            continue
        status = {"apply": "succeeded", "fail": "failed", "wait": "pending"}[fate]
        notes.append(Credited(amount, REDUCE_AMOUNT_DUE, status))
        if status == "succeeded":
            amount_due -= amount
        assert amount_due >= 0
        pending = sum(n.amount for n in notes if n.status == "pending")
        assert pending <= amount_due
        assert left_to_credit(REDUCE_AMOUNT_DUE, 0, amount_due, notes) == amount_due - pending
    applied = sum(n.amount for n in notes if n.status == "succeeded")
    assert applied + amount_due == due


def test_credit_notes_have_a_series_per_year() -> None:
    assert credit_note_series(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == "CN-2026"
