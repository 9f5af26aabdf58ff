"""Discounts from coupons (ADR 0023), pure: which billing periods a discount covers and what it
takes off an invoice's lines. Integer minor units; a percentage rounds down (in the customer's
disfavour by less than a cent, as Stripe does).

A discount covers billing periods, not invoices: `periods` of them (`once` is 1, `repeating` is
N, `forever` is None), counted as each period opens (activation, renewal, resume). It takes off
the lines that belong to a covered period: the base fee billed when the period opens, prorations
of a change made during it (a percentage only, on a net charge), and the overage billed when it
closes. A fixed amount is taken at most once per covered period, across those invoices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from billing.invoicing import Line, LineKind

APPLIES_TO = ("base", "overage", "both")
_KINDS = {
    "base": frozenset({LineKind.BASE, LineKind.PRORATION_CHARGE, LineKind.PRORATION_CREDIT}),
    "overage": frozenset({LineKind.OVERAGE}),
}
BASE_KINDS = _KINDS["base"]
OVERAGE_KINDS = _KINDS["overage"]


@dataclass(frozen=True, slots=True)
class Discount:
    code: str
    percent_off: int | None
    amount_off: int | None
    applies_to: str
    periods: int | None  # None: forever
    used: int = 0  # periods covered so far
    covered_start: datetime | None = None  # the start of the last period it covered
    amount_left: int = 0  # of a fixed amount, what the covered period may still take

    def __post_init__(self) -> None:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("a discount is a percentage or a fixed amount, not both")
        if self.percent_off is not None and not 0 < self.percent_off <= 100:
            raise ValueError("percent_off is between 1 and 100")
        if self.amount_off is not None and (
            type(self.amount_off) is not int or self.amount_off <= 0
        ):
            raise ValueError("amount_off is a positive integer of minor units")
        if self.applies_to not in APPLIES_TO:
            raise ValueError(f"applies_to is one of {APPLIES_TO}")

    @property
    def active(self) -> bool:
        """Periods left to cover."""
        return self.periods is None or self.used < self.periods


def open_period(discount: Discount | None, start: datetime) -> Discount | None:
    """A billing period opens at `start`: it is covered if the discount has periods left."""
    if discount is None or not discount.active:
        return discount
    return replace(
        discount,
        used=discount.used + 1,
        covered_start=start,
        amount_left=discount.amount_off or 0,
    )


def take_off(
    discount: Discount | None,
    lines: Sequence[Line],
    period_start: datetime,
    kinds: frozenset[LineKind],
    *,
    percent_only: bool = False,
) -> tuple[Line | None, Discount | None]:
    """The discount line for `lines` of the period starting at `period_start` (the kinds it may
    take off), and the discount after; none when that period is not covered."""
    if discount is None or discount.covered_start != period_start:
        return None, discount
    wanted = kinds & _applies(discount.applies_to)
    applicable = sum(line.amount for line in lines if line.kind in wanted)
    if applicable <= 0:
        return None, discount
    if discount.percent_off is not None:
        off = applicable * discount.percent_off // 100
    elif percent_only:
        return None, discount
    else:
        off = min(discount.amount_left, applicable)
        discount = replace(discount, amount_left=discount.amount_left - off)
    if off <= 0:
        return None, discount
    return Line(LineKind.DISCOUNT, f"Discount ({discount.code})", -off), discount


def _applies(applies_to: str) -> frozenset[LineKind]:
    if applies_to == "both":
        return BASE_KINDS | OVERAGE_KINDS
    return _KINDS[applies_to]
