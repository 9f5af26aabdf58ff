"""`billing revenue --month YYYY-MM`: the operators' revenue report (the twin of
`GET /api/billing/operator/reports/revenue`), read from Postgres as the worker role."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from typing import TextIO

from adapters.db.session import Database
from billing.revenue import InvalidMonth, RevenueReport, parse_month
from config import WORKER_ROLE, Settings
from services.reports import revenue as revenue_for


def revenue(settings: Settings, month: str, *, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Print the report; exit status 2 for a malformed month (before touching the database)."""
    try:
        parse_month(month)
    except InvalidMonth as error:
        print(f"billing revenue: {error}", file=sys.stderr)
        return 2

    async def run() -> RevenueReport:
        db = Database(settings.role_url(WORKER_ROLE), pool_size=1)
        try:
            return await revenue_for(db, month)
        finally:
            await db.dispose()

    report = asyncio.run(run())
    if as_json:
        print(json.dumps(asdict(report), indent=2), file=out)
        return 0
    print(f"Revenue report for {report.month} (minor units)", file=out)
    for currency, figures in report.currencies.items():
        print(f"\n{currency}", file=out)
        for name, value in asdict(figures).items():
            print(f"  {name:<20} {value:>14}", file=out)
    print("\nactive subscriptions by plan", file=out)
    for plan, count in report.active_subscriptions.items():
        print(f"  {plan:<20} {count:>14}", file=out)
    if not report.currencies:
        print("\n(no subscriptions or invoices up to this month)", file=out)
    return 0
