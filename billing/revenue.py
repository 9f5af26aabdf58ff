"""The operators' revenue report for one calendar month (UTC): MRR and its movements, active
subscriptions by plan, invoiced, collected and outstanding amounts, and a revenue recognition
schedule for annual plans. Pure: the rows come from Postgres (`adapters/db/reports.py`); every
figure is an integer in minor units, per currency. The rules are in docs/revenue.md.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

__all__ = [
    "Change",
    "CurrencyFigures",
    "InvoiceRow",
    "RecognitionLine",
    "RevenueReport",
    "SubscriptionHistory",
    "month_bounds",
    "monthly_amount",
    "parse_month",
    "recognized_through",
    "revenue_report",
    "state_at",
]

# Statuses that count as a paying customer: past_due is still one while dunning runs.
MRR_STATUSES = frozenset({"active", "past_due"})
# Change kinds after which `to_plan_code` is the plan in force (a scheduled change is not yet).
PLAN_IN_FORCE = frozenset({"plan_changed", "renewed"})
# Invoice statuses that were issued to the customer (a draft was not, a void one is undone).
ISSUED = frozenset({"open", "paid", "uncollectible"})


class InvalidMonth(ValueError):
    pass


def parse_month(text: str) -> date:
    """`YYYY-MM` -> the month's first day."""
    try:
        year, month = text.split("-")
        if len(year) != 4 or len(month) != 2:
            raise ValueError
        first = date(int(year), int(month), 1)
        month_bounds(first)  # the month after must exist too (not past year 9999)
        return first
    except ValueError as error:
        raise InvalidMonth(f"month must be YYYY-MM, got {text!r}") from error


def month_bounds(first: date) -> tuple[datetime, datetime]:
    """[start, end) of the month as UTC instants."""
    start = datetime(first.year, first.month, 1, tzinfo=UTC)
    end = datetime(first.year + first.month // 12, first.month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def monthly_amount(price: int, interval: str) -> int:
    """A plan's price per interval as monthly recurring revenue: an annual price is divided by
    12 and rounded half up (the one rounding in the report)."""
    if interval == "year":
        return (price + 6) // 12  # prices are never negative (a check constraint on plans)
    return price


@dataclass(frozen=True)
class Change:
    """One row of a subscription's history (`subscription_changes`)."""

    at: datetime
    kind: str
    to_status: str | None
    from_plan: str | None = None
    to_plan: str | None = None


@dataclass(frozen=True)
class SubscriptionHistory:
    currency: str
    interval: str  # month | year
    plan_code: str  # the plan it is on now
    # The price per interval of each plan code it has been on (the version it paid).
    prices: Mapping[str, int]
    changes: tuple[Change, ...]  # in order of `at`


def state_at(history: SubscriptionHistory, at: datetime) -> tuple[str | None, str]:
    """(status, plan code) in force at the instant `at`: what the last change before it left.
    Before its first change a subscription has no status (it did not exist yet)."""
    status: str | None = None
    in_force = [c for c in history.changes if c.kind in PLAN_IN_FORCE and c.from_plan]
    plan = in_force[0].from_plan if in_force else history.plan_code
    for change in history.changes:
        if change.at >= at:
            break
        status = change.to_status or status
        if change.kind in PLAN_IN_FORCE and change.to_plan:
            plan = change.to_plan
    assert plan is not None
    return status, plan


def mrr_at(history: SubscriptionHistory, at: datetime) -> int:
    status, plan = state_at(history, at)
    if status not in MRR_STATUSES:
        return 0
    return monthly_amount(history.prices[plan], history.interval)


@dataclass(frozen=True)
class InvoiceRow:
    currency: str
    status: str
    total: int
    amount_due: int
    amount_paid: int
    # The instant the invoice belongs to: the start of the service period it bills (invoices
    # are issued in advance), or when it was created when it bills no period.
    dated_at: datetime
    paid_at: datetime | None


@dataclass(frozen=True)
class RecognitionLine:
    """A line of an annual subscription's invoice with its service period."""

    currency: str
    amount: int
    period_start: datetime
    period_end: datetime


def recognized_through(line: RecognitionLine, at: datetime) -> int:
    """The part of the line recognised by `at`, per whole day of service: the cumulative
    amount is floored, so the parts of successive months add up to the line exactly."""
    total_days = (line.period_end.date() - line.period_start.date()).days
    if total_days <= 0:
        return line.amount if at > line.period_start else 0
    served = min(max((at.date() - line.period_start.date()).days, 0), total_days)
    return line.amount * served // total_days


@dataclass
class CurrencyFigures:
    mrr_start: int = 0
    mrr: int = 0  # at the month's end
    arr: int = 0
    new_mrr: int = 0
    expansion_mrr: int = 0
    contraction_mrr: int = 0
    churned_mrr: int = 0
    invoiced: int = 0
    collected: int = 0
    outstanding: int = 0
    recognized_revenue: int = 0  # annual plans, this month
    deferred_revenue: int = 0  # annual plans, at the month's end


@dataclass
class RevenueReport:
    month: str
    currencies: dict[str, CurrencyFigures] = field(default_factory=dict)
    # Subscriptions counted in MRR at the month's end, by plan code.
    active_subscriptions: dict[str, int] = field(default_factory=dict)


def revenue_report(
    month: date,
    subscriptions: Iterable[SubscriptionHistory],
    invoices: Iterable[InvoiceRow],
    annual_lines: Iterable[RecognitionLine],
) -> RevenueReport:
    start, end = month_bounds(month)
    figures: defaultdict[str, CurrencyFigures] = defaultdict(CurrencyFigures)
    active: defaultdict[str, int] = defaultdict(int)

    for sub in subscriptions:
        before, after = mrr_at(sub, start), mrr_at(sub, end)
        f = figures[sub.currency]
        f.mrr_start += before
        f.mrr += after
        if before == 0 and after > 0:
            f.new_mrr += after
        elif before > 0 and after == 0:
            f.churned_mrr += before
        elif after > before:
            f.expansion_mrr += after - before
        else:
            f.contraction_mrr += before - after
        status, plan = state_at(sub, end)
        if status in MRR_STATUSES:
            active[plan] += 1

    for inv in invoices:
        f = figures[inv.currency]
        if inv.status in ISSUED and start <= inv.dated_at < end:
            f.invoiced += inv.total
        if inv.paid_at is not None and start <= inv.paid_at < end:
            f.collected += inv.amount_paid
        if inv.dated_at < end:
            if inv.status == "open":
                f.outstanding += inv.amount_due - inv.amount_paid
            elif inv.status == "paid" and inv.paid_at is not None and inv.paid_at >= end:
                f.outstanding += inv.amount_due

    for line in annual_lines:
        f = figures[line.currency]
        f.recognized_revenue += recognized_through(line, end) - recognized_through(line, start)
        if line.period_start < end:
            f.deferred_revenue += line.amount - recognized_through(line, end)

    for f in figures.values():
        f.arr = f.mrr * 12
    return RevenueReport(
        month=f"{month.year:04d}-{month.month:02d}",
        currencies=dict(sorted(figures.items())),
        active_subscriptions=dict(sorted(active.items())),
    )
