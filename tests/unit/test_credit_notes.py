"""What may be credited on an invoice (ADR 0020): never more than was paid, in integers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.credit_notes import CreditRefused, check_credit, credit_note_series, refundable


@pytest.mark.parametrize(
    ("status", "paid", "credited", "amount", "left"),
    [
        ("paid", 4900, [], 2450, 2450),
        ("paid", 4900, [2450], 2450, 0),
        ("paid", 4900, [2450, 1000], 1450, 0),
        ("paid", 1, [], 1, 0),
    ],
)
def test_what_is_left_after_a_credit(
    status: str, paid: int, credited: list[int], amount: int, left: int
) -> None:
    assert check_credit(status, paid, credited, amount) == left


@pytest.mark.parametrize(
    ("status", "paid", "credited", "amount", "why"),
    [
        ("paid", 4900, [2450], 2451, "more than is left"),
        ("paid", 4900, [4900], 1, "more than is left"),
        ("open", 4900, [], 1, "only a paid invoice"),
        ("void", 0, [], 1, "only a paid invoice"),
        ("paid", 4900, [], 0, "positive integer"),
        ("paid", 4900, [], -5, "positive integer"),
        ("paid", 4900, [], 1.5, "positive integer"),
        ("paid", 4900, [], True, "positive integer"),
    ],
)
def test_refused_credits_say_why(
    status: str, paid: int, credited: list[int], amount: object, why: str
) -> None:
    with pytest.raises(CreditRefused, match=why):
        check_credit(status, paid, credited, amount)  # type: ignore[arg-type]


@given(
    paid=st.integers(min_value=0, max_value=10**9),
    requests=st.lists(st.integers(min_value=-10, max_value=10**9), max_size=20),
)
def test_credits_accepted_in_any_order_never_exceed_what_was_paid(
    paid: int, requests: list[int]
) -> None:
    credited: list[int] = []
    for amount in requests:
        try:
            left = check_credit("paid", paid, credited, amount)
        except CreditRefused:
            continue
        credited.append(amount)
        assert left == paid - sum(credited)
        assert all(type(c) is int for c in credited)
    assert sum(credited) <= paid
    assert refundable(paid, credited) == paid - sum(credited)


def test_credit_notes_have_a_series_per_year() -> None:
    assert credit_note_series(datetime(2026, 12, 31, 23, 59, tzinfo=UTC)) == "CN-2026"
