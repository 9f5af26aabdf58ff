"""Usage metering rules: what a valid event is, what a quota check answers, which notification
thresholds a counter crossed, and the overage lines a period's usage bills.

Pure functions over plain values (quantities are `Decimal`, money is integer minor units), so the
API, the reconciliation job and the subscription workflow apply exactly the same rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from billing.catalog import CapKind, Entitlement, Plan

__all__ = [
    "FUTURE_TOLERANCE",
    "MAX_METADATA_BYTES",
    "NOTIFY_THRESHOLDS",
    "BlockReason",
    "EventProblem",
    "OverageLine",
    "QuotaDecision",
    "billable_quantity",
    "check_event",
    "crossed_thresholds",
    "decide_quota",
    "effective_entitlement",
    "overage_lines",
    "period_key",
]

# Clocks drift: an event stamped a little ahead of ours is real usage, one far ahead is a bug.
FUTURE_TOLERANCE = timedelta(minutes=5)
# Metadata is for audit and re-rating (model, agent type, endpoint), not a document store.
MAX_METADATA_BYTES = 2048
# Quota notifications, in percent of the included quantity; each is sent once per period.
NOTIFY_THRESHOLDS = (80, 100)
# NUMERIC(24, 6): 18 integer digits and 6 decimals.
_MAX_QUANTITY = Decimal("1e18")
_QUANTUM = Decimal("0.000001")
_ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class EventProblem:
    """Why one usage event is refused: the field at fault and a sentence for the caller."""

    field: str
    message: str


def check_event(
    *,
    metric_known: bool,
    quantity: Decimal,
    occurred_at: datetime,
    metadata_bytes: int,
    now: datetime,
    period_start: datetime,
    period_end: datetime,
    future_tolerance: timedelta = FUTURE_TOLERANCE,
) -> EventProblem | None:
    """The first rule the event breaks, or None when it may be recorded.

    Late events are fine as long as they fall inside the open billing period: the period's
    counter is what quotas and overage read, and a closed period has already been billed.
    """
    # Decimal-to-Decimal comparisons only: comparing with an int goes through the numbers ABCs,
    # which is measurable at 1,000 events per request.
    if not metric_known:
        return EventProblem("metric", "unknown metric")
    if not quantity.is_finite():
        return EventProblem("quantity", "must be a finite number")
    if quantity < _ZERO:
        return EventProblem("quantity", "must not be negative")
    if quantity >= _MAX_QUANTITY:
        return EventProblem("quantity", "is too large")
    exponent = quantity.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -6 and quantity != quantity.quantize(_QUANTUM):
        return EventProblem("quantity", "has more than 6 decimal places")
    if occurred_at.tzinfo is None:
        return EventProblem("timestamp", "must include a UTC offset")
    if occurred_at > now + future_tolerance:
        return EventProblem("timestamp", "is more than 5 minutes in the future")
    if occurred_at < period_start:
        return EventProblem("timestamp", "is before the open billing period")
    if occurred_at >= period_end:
        return EventProblem("timestamp", "is after the open billing period (it has not opened)")
    if metadata_bytes > MAX_METADATA_BYTES:
        return EventProblem("metadata", f"is larger than {MAX_METADATA_BYTES} bytes as JSON")
    return None


def effective_entitlement(
    plan_entitlement: Entitlement,
    *,
    override_included: int | None = None,
    override_cap: str | None = None,
    override_unlimited: bool = False,
) -> Entitlement:
    """The plan's entitlement with an operator override applied (override fields win)."""
    if override_included is None and override_cap is None and not override_unlimited:
        return plan_entitlement
    included = None if override_unlimited else override_included
    if included is None and not override_unlimited:
        included = plan_entitlement.included
    cap = CapKind(override_cap) if override_cap is not None else plan_entitlement.cap
    price = plan_entitlement.overage_unit_price
    if included is None:
        cap = CapKind.HARD  # nothing to go over
    if cap is CapKind.HARD:
        price = 0
    return Entitlement(
        metric=plan_entitlement.metric,
        included=included,
        cap=cap,
        overage_unit_price=price,
        overage_unit_size=plan_entitlement.overage_unit_size,
    )


class BlockReason(StrEnum):
    HARD_CAP = "hard_cap_reached"
    GRACE_EXPIRED = "soft_cap_grace_expired"
    PAYMENT_OVERDUE = "payment_overdue"
    ACCOUNT_CLOSED = "account_closed"
    NO_SUBSCRIPTION = "no_active_subscription"
    # Paused: the period the pause closed is billed, and none is open until it resumes.
    SUBSCRIPTION_PAUSED = "subscription_paused"


@dataclass(frozen=True, slots=True)
class QuotaDecision:
    allowed: bool
    reason: BlockReason | None
    limit: int | None  # None: unlimited
    used: Decimal
    remaining: Decimal | None  # None: unlimited; never negative
    # Over a soft cap and still allowed: the grace window is (or is about to be) running.
    in_grace: bool = False


def decide_quota(
    entitlement: Entitlement,
    *,
    used: Decimal,
    requested: Decimal,
    access_status: str,
    blocked: bool,
    paused: bool = False,
) -> QuotaDecision:
    """Answer a quota check. Blocking order: account state, then hard cap, then expired grace.

    `blocked` is the period counter's flag set when a soft cap's grace window expired; it only
    blocks while usage is still over the (current) limit, so an upgrade that raises the limit
    above `used` unblocks at once without anyone clearing the flag.
    """
    limit = entitlement.included
    remaining = None if limit is None else max(Decimal(0), Decimal(limit) - used)

    def answer(allowed: bool, reason: BlockReason | None, in_grace: bool = False) -> QuotaDecision:
        return QuotaDecision(allowed, reason, limit, used, remaining, in_grace)

    if access_status == "suspended":
        return answer(False, BlockReason.PAYMENT_OVERDUE)
    if access_status != "active":
        return answer(False, BlockReason.ACCOUNT_CLOSED)
    if paused:
        return answer(False, BlockReason.SUBSCRIPTION_PAUSED)
    if limit is None:
        return answer(True, None)
    over = used + requested > limit
    if entitlement.cap is CapKind.HARD:
        return answer(not over, BlockReason.HARD_CAP if over else None)
    if blocked and over:
        return answer(False, BlockReason.GRACE_EXPIRED)
    return answer(True, None, in_grace=over)


def crossed_thresholds(limit: int | None, used: Decimal, already_notified: int) -> list[int]:
    """Notification thresholds (percent) that `used` has reached and were not yet notified."""
    if limit is None or limit == 0:
        return []
    return [t for t in NOTIFY_THRESHOLDS if t > already_notified and used * 100 >= limit * t]


def billable_quantity(used: Decimal) -> int:
    """A period's aggregate as the whole number of units it bills: fractions round up (a started
    unit is owed, the same rule as `Entitlement.overage_units` applies to blocks)."""
    if not used.is_finite() or used < 0:
        raise ValueError(f"usage must be a finite non-negative quantity, got {used}")
    return math.ceil(used)


@dataclass(frozen=True, slots=True)
class OverageLine:
    """One invoice line: usage over the included quantity of a soft-capped metric."""

    metric: str
    used: int
    included: int
    units: int  # blocks of `unit_size` billed
    unit_size: int
    unit_price: int  # minor units per block
    amount: int  # minor units

    @property
    def description(self) -> str:
        return (
            f"{self.metric}: {self.used - self.included} over {self.included} included "
            f"({self.units} x {self.unit_size})"
        )


def overage_lines(
    plan: Plan,
    usage: Mapping[str, Decimal | int],
    overrides: Mapping[str, Entitlement] | None = None,
) -> list[OverageLine]:
    """Overage lines for a closed period, one per soft-capped metric used over its quota,
    sorted by metric. Metrics the plan does not have are ignored (they cannot be billed)."""
    lines: list[OverageLine] = []
    for entitlement in plan.entitlements:
        entitlement = (overrides or {}).get(entitlement.metric, entitlement)
        raw = usage.get(entitlement.metric)
        if raw is None:
            continue
        used = billable_quantity(Decimal(raw))
        amount = entitlement.overage_charge(used)
        if amount == 0 or entitlement.included is None:
            continue
        lines.append(
            OverageLine(
                metric=entitlement.metric,
                used=used,
                included=entitlement.included,
                units=entitlement.overage_units(used),
                unit_size=entitlement.overage_unit_size,
                unit_price=entitlement.overage_unit_price,
                amount=amount,
            )
        )
    return lines


def period_key(period_start: datetime) -> str:
    """Compact UTC form of a period start, for workflow ids and notification ids."""
    return period_start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
