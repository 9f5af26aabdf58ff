"""The rules of a plan change and of the next invoice, as pure functions of the subscription's
facts: what kind of change it is, whether it applies now, what it bills now, and what the next
renewal will bill. The subscription workflow's `change_plan` update and its `preview` query run
the same functions, so a preview is the bill for the same instant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from billing.catalog import Interval, Plan
from billing.invoicing import InvoiceDraft, base_line, compose_invoice, proration_lines
from billing.lifecycle import Status
from billing.periods import period_bounds


class ChangeKind(StrEnum):
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    LATERAL = "lateral"


class Timing(StrEnum):
    DEFAULT = "default"  # upgrades now, downgrades and lateral changes at period end
    IMMEDIATE = "immediate"
    PERIOD_END = "period_end"


def change_kind(current: Plan, new: Plan, interval: Interval) -> ChangeKind:
    """By the price of the interval: dearer is an upgrade, cheaper a downgrade."""
    old_price, new_price = current.price(interval), new.price(interval)
    if new_price > old_price:
        return ChangeKind.UPGRADE
    if new_price < old_price:
        return ChangeKind.DOWNGRADE
    return ChangeKind.LATERAL


def applies_now(timing: str, kind: ChangeKind) -> bool:
    if timing == Timing.IMMEDIATE:
        return True
    if timing == Timing.PERIOD_END:
        return False
    return kind is ChangeKind.UPGRADE


@dataclass(frozen=True, slots=True)
class PricedChange:
    kind: ChangeKind
    immediate: bool
    # When the change takes effect (the instant priced, or the period's end when scheduled).
    effective_at: datetime
    # What the change bills now (prorations net of credit); None when it bills nothing now.
    invoice: InvoiceDraft | None


def price_change(
    *,
    status: str,
    current: Plan,
    new: Plan,
    interval: Interval,
    timing: str,
    at: datetime,
    period: tuple[datetime, datetime] | None,
    credit_balance: int,
) -> PricedChange:
    """`period`: the open billing period, None before the first one is anchored."""
    kind = change_kind(current, new, interval)
    if not applies_now(timing, kind):
        return PricedChange(kind, False, period[1] if period else at, None)
    if status == Status.TRIALING or period is None:
        # Nothing was paid during a trial: the new plan simply applies from activation.
        return PricedChange(kind, True, at, None)
    lines = proration_lines(current, new, interval, period, at)
    return PricedChange(kind, True, at, compose_invoice(new.currency, lines, credit_balance))


def next_invoice(
    *,
    status: str,
    plan: Plan,
    interval: Interval,
    trial_end: datetime | None,
    anchor: datetime | None,
    period_index: int,
    cancel_at_period_end: bool,
    credit_balance: int,
) -> tuple[datetime | None, InvoiceDraft | None]:
    """When the next renewal bills and what, with no usage yet (overage is known at close):
    the first period after a trial, or the period after the open one; nothing when the
    subscription ends at period end or is not billing."""
    if status == Status.TRIALING:
        assert trial_end is not None
        period = period_bounds(trial_end, interval, 0)
    elif anchor is not None and status in (Status.ACTIVE, Status.PAST_DUE):
        if cancel_at_period_end:
            return None, None
        period = period_bounds(anchor, interval, period_index + 1)
    else:
        return None, None
    base = base_line(plan, interval, period)
    return period[0], compose_invoice(plan.currency, [base] if base else [], credit_balance)
