"""Pure usage rules: event validation, quota decisions, thresholds and overage to the cent."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.catalog import CapKind, Catalog, Entitlement
from billing.usage import (
    BlockReason,
    billable_quantity,
    check_event,
    crossed_thresholds,
    decide_quota,
    effective_entitlement,
    overage_lines,
    period_key,
)

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)
START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)


def problem(**changes: object) -> str | None:
    args: dict[str, object] = {
        "metric_known": True,
        "quantity": Decimal(1),
        "occurred_at": NOW,
        "metadata_bytes": 10,
        "now": NOW,
        "period_start": START,
        "period_end": END,
    }
    args.update(changes)
    found = check_event(**args)  # type: ignore[arg-type]
    return None if found is None else found.field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({}, None),
        ({"metric_known": False}, "metric"),
        ({"quantity": Decimal(-1)}, "quantity"),
        ({"quantity": Decimal("NaN")}, "quantity"),
        ({"quantity": Decimal("Infinity")}, "quantity"),
        ({"quantity": Decimal("0.0000001")}, "quantity"),
        ({"quantity": Decimal("1e19")}, "quantity"),
        ({"occurred_at": NOW + timedelta(minutes=4)}, None),
        ({"occurred_at": NOW + timedelta(minutes=6)}, "timestamp"),
        ({"occurred_at": START - timedelta(seconds=1)}, "timestamp"),
        ({"occurred_at": START}, None),
        ({"occurred_at": datetime(2026, 11, 24, 12)}, "timestamp"),  # noqa: DTZ001 - naive on purpose
        ({"metadata_bytes": 2049}, "metadata"),
    ],
)
def test_check_event(changes: dict[str, object], field: str | None) -> None:
    assert problem(**changes) == field


HARD = Entitlement("api_calls", 1000, CapKind.HARD, 0, 1000)
SOFT = Entitlement("llm_tokens", 1000, CapKind.SOFT, 2, 1000)
UNLIMITED = Entitlement("user_seats", None, CapKind.HARD, 0, 1)


def decide(e: Entitlement, used: int, requested: int = 1, **kw: object) -> tuple[bool, object]:
    d = decide_quota(
        e,
        used=Decimal(used),
        requested=Decimal(requested),
        access_status=str(kw.get("status", "active")),
        blocked=bool(kw.get("blocked", False)),
    )
    return d.allowed, d.reason


def test_hard_cap_blocks_when_used_plus_requested_exceeds_the_limit() -> None:
    assert decide(HARD, 999, 1) == (True, None)
    assert decide(HARD, 999, 2) == (False, BlockReason.HARD_CAP)
    assert decide(HARD, 1000, 0) == (True, None)


def test_soft_cap_allows_past_the_limit_until_the_grace_expired() -> None:
    assert decide(SOFT, 5000, 1) == (True, None)
    assert decide(SOFT, 5000, 1, blocked=True) == (False, BlockReason.GRACE_EXPIRED)
    # an upgrade raising the limit above usage unblocks without clearing the flag
    bigger = Entitlement("llm_tokens", 10_000, CapKind.SOFT, 2, 1000)
    assert decide(bigger, 5000, 1, blocked=True) == (True, None)


def test_account_state_blocks_first() -> None:
    assert decide(UNLIMITED, 0, status="suspended") == (False, BlockReason.PAYMENT_OVERDUE)
    assert decide(UNLIMITED, 0, status="closed") == (False, BlockReason.ACCOUNT_CLOSED)
    assert decide(UNLIMITED, 10**9) == (True, None)


def test_thresholds_once_each() -> None:
    assert crossed_thresholds(100, Decimal(79), 0) == []
    assert crossed_thresholds(100, Decimal(80), 0) == [80]
    assert crossed_thresholds(100, Decimal(120), 0) == [80, 100]
    assert crossed_thresholds(100, Decimal(120), 80) == [100]
    assert crossed_thresholds(100, Decimal(120), 100) == []
    assert crossed_thresholds(None, Decimal(120), 0) == []


def test_override_replaces_included_and_cap() -> None:
    e = effective_entitlement(SOFT, override_included=5000)
    assert (e.included, e.cap, e.overage_unit_price) == (5000, CapKind.SOFT, 2)
    e = effective_entitlement(SOFT, override_cap="hard")
    assert (e.included, e.cap, e.overage_unit_price) == (1000, CapKind.HARD, 0)
    assert effective_entitlement(SOFT) is SOFT


def test_overage_lines_to_the_cent(catalog: Catalog) -> None:
    standard = catalog.plan("standard")
    usage = {
        "llm_tokens": Decimal(1_250_001),  # 250,001 over -> 251 blocks of 1,000 x 2c = 502c
        "agent_executions": 5_007,  # 7 over x 5c = 35c
        "api_calls": Decimal(100_000),  # exactly included: no line
        "storage_gb": Decimal("100.5"),  # peak 100.5 GB -> 101 billable -> 1 over x 25c
        "user_seats": 40,  # hard cap: never billed
    }
    lines = overage_lines(standard, usage)
    assert [(line.metric, line.units, line.amount) for line in lines] == [
        ("agent_executions", 7, 35),
        ("llm_tokens", 251, 502),
        ("storage_gb", 1, 25),
    ]
    assert sum(line.amount for line in lines) == 562


def test_free_plan_never_bills_overage(catalog: Catalog) -> None:
    assert overage_lines(catalog.plan("free"), {"llm_tokens": 10**9}) == []


def test_billable_quantity_rounds_fractions_up() -> None:
    assert billable_quantity(Decimal("0.000001")) == 1
    assert billable_quantity(Decimal(3)) == 3
    with pytest.raises(ValueError, match="non-negative"):
        billable_quantity(Decimal(-1))


def test_period_key_is_utc() -> None:
    from datetime import timezone

    paris = timezone(timedelta(hours=1))
    assert period_key(datetime(2026, 11, 1, 1, tzinfo=paris)) == "20261101T000000Z"


@given(
    used=st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False),
    included=st.integers(0, 10**7),
    size=st.integers(1, 10_000),
    price=st.integers(0, 10_000),
)
def test_overage_is_whole_started_blocks_of_the_excess(
    used: Decimal, included: int, size: int, price: int
) -> None:
    from billing.catalog import Interval, Plan

    soft = Entitlement("llm_tokens", included, CapKind.SOFT, price, size)
    plan = Plan("p", "P", "usd", 0, {Interval.MONTH: 0, Interval.YEAR: 0}, (soft,))
    lines = overage_lines(plan, {"llm_tokens": used})
    excess = max(0, math.ceil(used) - included)
    expected = -(-excess // size) * price
    assert sum(line.amount for line in lines) == expected
    for line in lines:
        # never more than one block's worth over the exact (fractional) excess
        assert line.units * size >= used - included
        assert (line.units - 1) * size < used - included
