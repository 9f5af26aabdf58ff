"""Invoice composition and proration: the one piece of code that both bills and previews.

Rules (see docs/adr/0002-subscription-lifecycle.md):

* The base fee is billed **in advance** for the period it opens; usage overage is billed **in
  arrears** for the period that just closed, on the entitlements in force when it closed.
* Proration works on whole seconds. A change at instant `at` inside `[start, end)` credits the
  unused part of the old price and charges the same part of the new price, each line computed
  separately as ``mul_ratio(price, remaining_seconds, period_seconds)`` (exact integers, rounded
  half to even). Because `mul_ratio` is symmetric, a change and its exact reverse at the same
  instant net to exactly zero, and a credit never exceeds the price paid for the period.
* Totals are never negative. When the lines sum below zero (a downgrade's credit exceeds the new
  charge) the invoice total is zero and the difference becomes a **credit balance** carried to
  the next invoice, where it is applied as a `credit` line up to that invoice's subtotal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from billing.catalog import Interval, Plan
from billing.money import mul_ratio

__all__ = [
    "InvoiceDraft",
    "Line",
    "LineKind",
    "base_line",
    "compose_invoice",
    "overage_lines",
    "proration_lines",
    "prorated_amount",
]

_SECOND = timedelta(seconds=1)


class LineKind(StrEnum):
    BASE = "base"
    PRORATION_CREDIT = "proration_credit"
    PRORATION_CHARGE = "proration_charge"
    OVERAGE = "overage"
    CREDIT = "credit"
    # A one-time charge an operator added (a setup fee, services, a correction): ADR 0022.
    ONE_OFF = "one_off"
    # What a coupon takes off (negative): ADR 0023.
    DISCOUNT = "discount"


@dataclass(frozen=True, slots=True)
class Line:
    """One invoice line in minor units; negative amounts are credits."""

    kind: LineKind
    description: str
    amount: int
    metric: str | None = None
    quantity: int | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TypeError(f"Line.amount must be an int, got {type(self.amount).__name__}")


@dataclass(frozen=True, slots=True)
class InvoiceDraft:
    """A composed invoice: `total` = `subtotal` - `credit_applied`, never negative.

    `credit_balance_after` is the customer's credit once this invoice is issued (it grows when
    the lines sum below zero, shrinks when credit is applied)."""

    currency: str
    lines: tuple[Line, ...]
    subtotal: int
    credit_applied: int
    total: int
    credit_balance_after: int


def _seconds(delta: timedelta) -> int:
    # Whole seconds, floored: integer arithmetic on timedelta, never a float.
    return delta // _SECOND


def prorated_amount(price: int, start: datetime, end: datetime, at: datetime) -> int:
    """The part of `price` (for `[start, end)`) that falls in `[at, end)`, in minor units."""
    if not start <= at <= end:
        raise ValueError(f"{at.isoformat()} is outside the period {start.isoformat()}..")
    total = _seconds(end - start)
    if total <= 0:
        raise ValueError("a period must last at least one second")
    return mul_ratio(price, _seconds(end - at), total)


def proration_lines(
    old_plan: Plan,
    new_plan: Plan,
    interval: Interval,
    period: tuple[datetime, datetime],
    at: datetime,
) -> tuple[Line, ...]:
    """Credit for unused time on `old_plan`, charge for the remaining time on `new_plan`.

    Zero-amount lines are left out (e.g. a change at the very end of the period)."""
    start, end = period
    credit = -prorated_amount(old_plan.price(interval), start, end, at)
    charge = prorated_amount(new_plan.price(interval), start, end, at)
    lines = []
    if credit:
        lines.append(
            Line(
                LineKind.PRORATION_CREDIT,
                f"Unused time on {old_plan.name} after {at.date().isoformat()}",
                credit,
                period_start=at,
                period_end=end,
            )
        )
    if charge:
        lines.append(
            Line(
                LineKind.PRORATION_CHARGE,
                f"Remaining time on {new_plan.name} from {at.date().isoformat()}",
                charge,
                period_start=at,
                period_end=end,
            )
        )
    return tuple(lines)


def base_line(plan: Plan, interval: Interval, period: tuple[datetime, datetime]) -> Line | None:
    """The base fee for `period`, billed in advance; None for a free plan."""
    price = plan.price(interval)
    if price == 0:
        return None
    start, end = period
    return Line(
        LineKind.BASE,
        f"{plan.name} ({interval.value}ly) {start.date().isoformat()} - {end.date().isoformat()}",
        price,
        period_start=start,
        period_end=end,
    )


def overage_lines(
    plan: Plan, usage: Mapping[str, int], period: tuple[datetime, datetime]
) -> tuple[Line, ...]:
    """Overage for a closed period's usage, on `plan`'s entitlements; metrics with nothing to
    bill (within quota, hard capped, unlimited, or unknown to the plan) give no line."""
    lines = []
    start, end = period
    known = set(plan.metrics)
    for metric in sorted(usage):
        if metric not in known:
            continue
        entitlement = plan.entitlement(metric)
        amount = entitlement.overage_charge(usage[metric])
        if amount:
            lines.append(
                Line(
                    LineKind.OVERAGE,
                    f"{metric} over the included {entitlement.included}: "
                    f"{entitlement.overage_units(usage[metric])} x {entitlement.overage_unit_size}",
                    amount,
                    metric=metric,
                    quantity=usage[metric],
                    period_start=start,
                    period_end=end,
                )
            )
    return tuple(lines)


def compose_invoice(currency: str, lines: Sequence[Line], credit_balance: int) -> InvoiceDraft:
    """Sum `lines`, apply the carried `credit_balance` (>= 0), never go below zero."""
    if isinstance(credit_balance, bool) or not isinstance(credit_balance, int):
        raise TypeError("credit_balance must be an int")
    if credit_balance < 0:
        raise ValueError(f"credit_balance must be non-negative, got {credit_balance}")
    subtotal = sum(line.amount for line in lines)
    if subtotal <= 0:
        # Nothing owed: the excess credit joins the balance for the next invoice.
        return InvoiceDraft(currency, tuple(lines), subtotal, 0, 0, credit_balance + (-subtotal))
    applied = min(credit_balance, subtotal)
    all_lines = tuple(lines)
    if applied:
        all_lines += (Line(LineKind.CREDIT, "Credit from earlier changes", -applied),)
    return InvoiceDraft(
        currency, all_lines, subtotal, applied, subtotal - applied, credit_balance - applied
    )
