"""The rows of the operators' revenue report (`billing/revenue.py`), read across every tenant
as the worker role: subscriptions with their history and plan prices, invoices, and the lines
of annual subscriptions' invoices for the recognition schedule."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from uuid import UUID

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import invoice_items, invoices, plans, subscription_changes, subscriptions
from billing.revenue import (
    ISSUED,
    Change,
    InvoiceRow,
    RecognitionLine,
    SubscriptionHistory,
)

# Invoice lines that bill a service period of the plan (usage overage is billed for the period
# it was used in, after the fact, and is recognised when invoiced).
RECURRING_KINDS = ("base", "proration_charge", "proration_credit")


async def subscription_histories(conn: AsyncConnection, end: datetime) -> list[SubscriptionHistory]:
    """Every subscription with its changes before `end`, and the price per its interval of
    each plan it has been on: its own plan version for the plan it is on now, the latest
    version for a plan it left (the one a change to it was priced at, unless the catalog
    changed since)."""
    latest = (
        select(plans.c.code, func.max(plans.c.version).label("version"))
        .group_by(plans.c.code)
        .subquery()
    )
    latest_prices = {
        row.code: (row.monthly_price, row.annual_price)
        for row in await conn.execute(
            select(plans.c.code, plans.c.monthly_price, plans.c.annual_price).join(
                latest, (plans.c.code == latest.c.code) & (plans.c.version == latest.c.version)
            )
        )
    }
    changes: defaultdict[UUID, list[Change]] = defaultdict(list)
    for row in await conn.execute(
        select(
            subscription_changes.c.subscription_id,
            subscription_changes.c.effective_at,
            subscription_changes.c.kind,
            subscription_changes.c.to_status,
            subscription_changes.c.from_plan_code,
            subscription_changes.c.to_plan_code,
        )
        .where(subscription_changes.c.effective_at < end)
        .order_by(subscription_changes.c.effective_at, subscription_changes.c.id)
    ):
        changes[row.subscription_id].append(
            Change(row.effective_at, row.kind, row.to_status, row.from_plan_code, row.to_plan_code)
        )
    histories = []
    for row in await conn.execute(
        select(
            subscriptions.c.id,
            subscriptions.c.currency,
            subscriptions.c.interval,
            subscriptions.c.plan_code,
            plans.c.monthly_price,
            plans.c.annual_price,
        ).join(plans, plans.c.id == subscriptions.c.plan_id)
    ):
        column = 0 if row.interval == "month" else 1
        prices = {code: both[column] for code, both in latest_prices.items()}
        prices[row.plan_code] = row.monthly_price if column == 0 else row.annual_price
        histories.append(
            SubscriptionHistory(
                currency=row.currency,
                interval=row.interval,
                plan_code=row.plan_code,
                prices=prices,
                changes=tuple(changes.get(row.id, ())),
            )
        )
    return histories


async def invoice_rows(conn: AsyncConnection, end: datetime) -> list[InvoiceRow]:
    """Invoices dated before `end` (the start of the period they bill, else their creation)."""
    dated = func.coalesce(invoices.c.period_start, invoices.c.created_at)
    rows = await conn.execute(
        select(
            invoices.c.currency,
            invoices.c.status,
            invoices.c.total,
            invoices.c.amount_due,
            invoices.c.amount_paid,
            dated.label("dated_at"),
            invoices.c.paid_at,
        ).where(dated < end)
    )
    return [
        InvoiceRow(
            r.currency, r.status, r.total, r.amount_due, r.amount_paid, r.dated_at, r.paid_at
        )
        for r in rows
    ]


async def annual_lines(conn: AsyncConnection, end: datetime) -> list[RecognitionLine]:
    """The recurring lines, with a service period starting before `end`, of annual
    subscriptions' issued invoices."""
    rows = await conn.execute(
        select(
            invoice_items.c.currency,
            invoice_items.c.amount,
            invoice_items.c.period_start,
            invoice_items.c.period_end,
        )
        .join(invoices, invoices.c.id == invoice_items.c.invoice_id)
        .join(subscriptions, subscriptions.c.id == invoices.c.subscription_id)
        .where(
            subscriptions.c.interval == "year",
            invoices.c.status.in_(sorted(ISSUED)),
            invoice_items.c.kind.in_(RECURRING_KINDS),
            invoice_items.c.period_start.is_not(None),
            invoice_items.c.period_end.is_not(None),
            invoice_items.c.period_start < end,
        )
    )
    return [RecognitionLine(r.currency, r.amount, r.period_start, r.period_end) for r in rows]
