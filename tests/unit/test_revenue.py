"""The revenue report's arithmetic (billing/revenue.py): the one rounding, the recognition
schedule adding up to each line, and MRR movements adding up to the change in MRR."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.revenue import (
    Change,
    InvalidMonth,
    RecognitionLine,
    SubscriptionHistory,
    month_bounds,
    monthly_amount,
    parse_month,
    recognized_through,
    revenue_report,
    state_at,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("price", "interval", "monthly"),
    [(4900, "month", 4900), (49000, "year", 4083), (499000, "year", 41583), (6, "year", 1),
     (5, "year", 0), (18, "year", 2), (0, "year", 0)],
)  # fmt: skip
def test_an_annual_price_is_a_twelfth_rounded_half_up(
    price: int, interval: str, monthly: int
) -> None:
    assert monthly_amount(price, interval) == monthly


@pytest.mark.parametrize("bad", ["2026-13", "2026-00", "26-01", "2026-1", "x", "9999-12"])
def test_months_are_yyyy_mm(bad: str) -> None:
    with pytest.raises(InvalidMonth):
        parse_month(bad)


def test_december_ends_on_the_first_of_january() -> None:
    assert month_bounds(date(2026, 12, 1))[1] == datetime(2027, 1, 1, tzinfo=UTC)


@given(
    amount=st.integers(-(10**9), 10**9),
    start_offset=st.integers(0, 400 * 24),
    days=st.integers(1, 800),
)
def test_the_months_recognise_exactly_the_line(amount: int, start_offset: int, days: int) -> None:
    start = T0 + timedelta(hours=start_offset)
    line = RecognitionLine("usd", amount, start, start + timedelta(days=days))
    first = date(start.year, start.month, 1)
    parts = []
    while True:
        lo, hi = month_bounds(first)
        parts.append(recognized_through(line, hi) - recognized_through(line, lo))
        if hi > line.period_end:
            break
        first = hi.date()
    assert all(isinstance(p, int) for p in parts)
    assert sum(parts) == amount
    # Never more than the line in any month, in the line's direction.
    assert all(abs(p) <= abs(amount) for p in parts)


STATUSES = ["trialing", "active", "past_due", "paused", "canceled"]
PLANS = {"standard": 4900, "enterprise": 49900, "annual": 49000}


@st.composite
def histories(draw: st.DrawFn) -> SubscriptionHistory:
    interval = draw(st.sampled_from(["month", "year"]))
    n = draw(st.integers(0, 8))
    plan = draw(st.sampled_from(sorted(PLANS)))
    changes = []
    at = T0
    for _ in range(n):
        at += timedelta(days=draw(st.integers(1, 40)))
        kind = draw(st.sampled_from(["activated", "renewed", "plan_changed", "canceled", "paused"]))
        new_plan = draw(st.sampled_from(sorted(PLANS))) if kind == "plan_changed" else plan
        changes.append(Change(at, kind, draw(st.sampled_from(STATUSES)), plan, new_plan))
        plan = new_plan
    return SubscriptionHistory("usd", interval, plan, PLANS, tuple(changes))


@given(st.lists(histories(), max_size=12), st.integers(0, 11))
def test_mrr_movements_add_up_to_the_change_in_mrr(
    subs: list[SubscriptionHistory], month: int
) -> None:
    report = revenue_report(date(2025, 1 + month, 1), subs, [], [])
    for f in report.currencies.values():
        assert (
            f.mrr == f.mrr_start + f.new_mrr + f.expansion_mrr - f.contraction_mrr - f.churned_mrr
        )
        assert min(f.new_mrr, f.expansion_mrr, f.contraction_mrr, f.churned_mrr) >= 0
        assert f.arr == 12 * f.mrr
    assert sum(report.active_subscriptions.values()) == sum(
        1 for s in subs if state_at(s, month_bounds(date(2025, 1 + month, 1))[1])[0]
        in ("active", "past_due")
    )  # fmt: skip


def test_a_scheduled_change_is_not_in_force_until_it_applies() -> None:
    history = SubscriptionHistory(
        "usd", "month", "standard", PLANS,
        (
            Change(T0, "activated", "active"),
            Change(
                T0 + timedelta(days=5), "plan_change_scheduled", "active", "enterprise", "standard"
            ),
            Change(T0 + timedelta(days=20), "plan_changed", "active", "enterprise", "standard"),
        ),
    )  # fmt: skip
    assert state_at(history, T0 + timedelta(days=1)) == ("active", "enterprise")
    assert state_at(history, T0 + timedelta(days=10)) == ("active", "enterprise")
    assert state_at(history, T0 + timedelta(days=21)) == ("active", "standard")
    assert state_at(history, T0) == (None, "enterprise")
