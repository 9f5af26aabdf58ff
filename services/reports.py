"""Reports for operators, computed from Postgres across every tenant (the worker role)."""

from __future__ import annotations

from adapters.db import reports as repo
from adapters.db.session import Database
from billing.revenue import InvalidMonth, RevenueReport, month_bounds, parse_month, revenue_report
from services.errors import FieldInvalid


async def revenue(db: Database, month: str) -> RevenueReport:
    """The revenue report of `month` (`YYYY-MM`, UTC), for the API and `billing revenue`."""
    try:
        first = parse_month(month)
    except InvalidMonth as error:
        raise FieldInvalid("month", str(error), location="query") from error
    _, end = month_bounds(first)
    async with db.transaction() as conn:  # every tenant's subscriptions and invoices
        histories = await repo.subscription_histories(conn, end)
        invoices = await repo.invoice_rows(conn, end)
        lines = await repo.annual_lines(conn, end)
    return revenue_report(first, histories, invoices, lines)
