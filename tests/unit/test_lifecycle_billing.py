"""Pure domain: periods through a leap year, proration, invoice composition, transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.catalog import Catalog, Interval, Plan
from billing.errors import InvalidTransition
from billing.invoicing import (
    LineKind,
    base_line,
    compose_invoice,
    overage_lines,
    prorated_amount,
    proration_lines,
)
from billing.lifecycle import Command, LifecycleFacts, Status, check_cancel, check_command
from billing.periods import card_expires_at, period_bounds


def _dt(y: int, m: int, d: int, h: int = 0) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


# --- periods ---------------------------------------------------------------------------------


def test_jan_31_anchor_through_a_leap_year() -> None:
    anchor = _dt(2027, 1, 31, 9)
    ends = [period_bounds(anchor, Interval.MONTH, i)[1] for i in range(14)]
    assert [(e.year, e.month, e.day) for e in ends] == [
        (2027, 2, 28), (2027, 3, 31), (2027, 4, 30), (2027, 5, 31), (2027, 6, 30),
        (2027, 7, 31), (2027, 8, 31), (2027, 9, 30), (2027, 10, 31), (2027, 11, 30),
        (2027, 12, 31), (2028, 1, 31), (2028, 2, 29), (2028, 3, 31),
    ]  # fmt: skip
    assert all(e.hour == 9 for e in ends)
    # Consecutive periods touch: no gap, no overlap.
    for i in range(13):
        assert (
            period_bounds(anchor, Interval.MONTH, i)[1]
            == period_bounds(anchor, Interval.MONTH, i + 1)[0]
        )


def test_annual_period_from_feb_29() -> None:
    assert period_bounds(_dt(2028, 2, 29), Interval.YEAR, 0)[1] == _dt(2029, 2, 28)
    assert period_bounds(_dt(2028, 2, 29), Interval.YEAR, 3)[1] == _dt(2032, 2, 29)


# --- proration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "at", "expected"),
    [
        (4900, _dt(2027, 4, 1), 4900),  # at the start: all of it
        (4900, _dt(2027, 5, 1), 0),  # at the end: nothing
        (4900, _dt(2027, 4, 16), 2450),  # half of a 30-day month
        (4900, _dt(2027, 4, 21), 1633),  # 10/30 of 4900 = 1633.33 -> 1633
        (49900, _dt(2027, 4, 11), 33267),  # 20/30 of 49900 = 33266.67 -> 33267
        (1, _dt(2027, 4, 16), 0),  # exactly half a cent -> the even neighbour 0
        (3, _dt(2027, 4, 16), 2),  # 1.5 -> 2 (half to even)
    ],
)
def test_prorated_amount_table(price: int, at: datetime, expected: int) -> None:
    assert prorated_amount(price, _dt(2027, 4, 1), _dt(2027, 5, 1), at) == expected


def test_proration_outside_the_period_is_refused() -> None:
    with pytest.raises(ValueError, match="outside"):
        prorated_amount(100, _dt(2027, 4, 1), _dt(2027, 5, 1), _dt(2027, 5, 2))


def test_upgrade_lines(catalog: Catalog) -> None:
    standard, enterprise = catalog.plan("standard"), catalog.plan("enterprise")
    lines = proration_lines(
        standard, enterprise, Interval.MONTH, (_dt(2027, 4, 1), _dt(2027, 5, 1)), _dt(2027, 4, 16)
    )
    assert [(line.kind, line.amount) for line in lines] == [
        (LineKind.PRORATION_CREDIT, -2450),
        (LineKind.PRORATION_CHARGE, 24950),
    ]


instants = st.integers(min_value=0, max_value=31 * 86400)
prices = st.integers(min_value=0, max_value=10**9)


@given(old=prices, new=prices, offset=instants)
def test_change_and_exact_reverse_net_to_zero(old: int, new: int, offset: int) -> None:
    start, end = _dt(2027, 1, 1), _dt(2027, 2, 1)
    at = start + timedelta(seconds=offset)
    forward = proration_lines(_plan(old), _plan(new), Interval.MONTH, (start, end), at)
    back = proration_lines(_plan(new), _plan(old), Interval.MONTH, (start, end), at)
    amounts = [line.amount for line in forward + back]
    assert all(type(a) is int for a in amounts)
    assert sum(amounts) == 0


@given(price=prices, offset=instants)
def test_credit_never_exceeds_what_was_paid(price: int, offset: int) -> None:
    start, end = _dt(2027, 1, 1), _dt(2027, 2, 1)
    at = start + timedelta(seconds=offset)
    credit = prorated_amount(price, start, end, at)
    assert 0 <= credit <= price


@given(
    amounts=st.lists(st.integers(min_value=-(10**8), max_value=10**8), max_size=8),
    balance=st.integers(min_value=0, max_value=10**8),
)
def test_composed_totals_are_non_negative_integers_and_conserve_money(
    amounts: list[int], balance: int
) -> None:
    from billing.invoicing import Line

    lines = [Line(LineKind.PRORATION_CHARGE, "x", a) for a in amounts]
    draft = compose_invoice("usd", lines, balance)
    assert type(draft.total) is int
    assert draft.total >= 0
    assert draft.credit_balance_after >= 0
    # Nothing created or lost: what is owed now plus the credit left equals lines minus credit.
    assert draft.total - draft.credit_balance_after == sum(amounts) - balance
    assert draft.total == sum(line.amount for line in draft.lines) or sum(amounts) <= 0


def test_downgrade_credit_is_carried_forward(catalog: Catalog) -> None:
    lines = proration_lines(
        catalog.plan("enterprise"),
        catalog.plan("standard"),
        Interval.MONTH,
        (_dt(2027, 4, 1), _dt(2027, 5, 1)),
        _dt(2027, 4, 16),
    )
    draft = compose_invoice("usd", lines, 0)
    assert (draft.subtotal, draft.total, draft.credit_balance_after) == (-22500, 0, 22500)
    renewal = compose_invoice("usd", [_base(catalog, "standard")], draft.credit_balance_after)
    assert (renewal.total, renewal.credit_applied, renewal.credit_balance_after) == (0, 4900, 17600)
    assert renewal.lines[-1].kind is LineKind.CREDIT
    assert renewal.lines[-1].amount == -4900


def test_overage_billed_from_usage(catalog: Catalog) -> None:
    standard = catalog.plan("standard")
    e = standard.entitlement("llm_tokens")
    assert e.included is not None
    usage = {"llm_tokens": e.included + 1, "api_calls": 0, "not_a_metric": 5}
    lines = overage_lines(standard, usage, (_dt(2027, 4, 1), _dt(2027, 5, 1)))
    assert [(line.metric, line.amount) for line in lines] == [("llm_tokens", e.overage_unit_price)]


def test_free_plan_has_no_base_line(catalog: Catalog) -> None:
    assert (
        base_line(catalog.plan("free"), Interval.MONTH, (_dt(2027, 4, 1), _dt(2027, 5, 1))) is None
    )


def _base(catalog: Catalog, code: str):  # type: ignore[no-untyped-def]
    line = base_line(catalog.plan(code), Interval.MONTH, (_dt(2027, 5, 1), _dt(2027, 6, 1)))
    assert line is not None
    return line


def _plan(price: int) -> Plan:
    return Plan.from_dict(
        {
            "code": "p",
            "name": f"P{price}",
            "currency": "usd",
            "trial_days": 0,
            "prices": {"month": price, "year": price * 10},
            "metrics": {},
        }
    )


# --- transitions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "status", "pending", "allowed"),
    [
        (Command.CHANGE_PLAN, Status.ACTIVE, False, True),
        (Command.CHANGE_PLAN, Status.TRIALING, False, True),
        (Command.CHANGE_PLAN, Status.PAST_DUE, False, False),
        (Command.CHANGE_PLAN, Status.PAUSED, False, False),
        (Command.CHANGE_PLAN, Status.ACTIVE, True, False),
        (Command.CANCEL, Status.PAUSED, False, True),
        (Command.CANCEL, Status.CANCELED, False, False),
        (Command.UNDO_CANCEL, Status.ACTIVE, True, True),
        (Command.UNDO_CANCEL, Status.ACTIVE, False, False),
        (Command.PAUSE, Status.ACTIVE, False, True),
        (Command.PAUSE, Status.TRIALING, False, False),
        (Command.PAUSE, Status.ACTIVE, True, False),
        (Command.RESUME, Status.PAUSED, False, True),
        (Command.RESUME, Status.ACTIVE, False, False),
    ],
)
def test_transition_table(command: Command, status: Status, pending: bool, allowed: bool) -> None:
    facts = LifecycleFacts(status, cancel_at_period_end=pending)
    if allowed:
        check_command(command, facts)
    else:
        with pytest.raises(InvalidTransition) as raised:
            check_command(command, facts)
        assert raised.value.code == "invalid_transition"
        assert str(raised.value)  # a reason a person can act on


def test_cancel_at_period_end_twice_is_refused() -> None:
    facts = LifecycleFacts(Status.ACTIVE, cancel_at_period_end=True)
    check_cancel(facts, at_period_end=False)
    with pytest.raises(InvalidTransition, match="already pending"):
        check_cancel(facts, at_period_end=True)


def test_a_card_expires_after_the_last_day_of_its_expiry_month() -> None:
    assert card_expires_at(2027, 5) == datetime(2027, 6, 1, tzinfo=UTC)
    assert card_expires_at(2027, 12) == datetime(2028, 1, 1, tzinfo=UTC)
