"""`billing reconcile-usage`: recompute usage aggregates from raw events (backfill)."""

from __future__ import annotations

import asyncio
from datetime import date

from adapters.db.session import Database
from adapters.db.usage import Drift, find_drift, repair_drift
from billing.catalog import Aggregation, load_catalog
from config import WORKER_ROLE, Settings


def reconcile_usage(settings: Settings, first: date, last: date, *, repair: bool) -> int:
    """`billing reconcile-usage`: the backfill, run directly against Postgres (worker role), so
    it also works when Temporal is down. Prints one line per drifted aggregate; exit status 1
    when drift was found (repaired or not), 0 when there was none."""
    catalog = load_catalog(settings.catalog_path)
    gauges = [m.code for m in catalog.metrics.values() if m.aggregation is Aggregation.MAX]

    async def run() -> list[Drift]:
        db = Database(settings.role_url(WORKER_ROLE), pool_size=1)
        try:
            async with db.transaction() as conn:
                drift = await find_drift(conn, first, last, gauges)
                if drift and repair:
                    await repair_drift(conn, drift, gauges)
            return drift
        finally:
            await db.dispose()

    drift = asyncio.run(run())
    for d in drift:
        where = d.usage_date.isoformat() if d.usage_date else f"period {d.period_start}"
        print(  # noqa: T201 - CLI output
            f"{d.tenant_id} {d.metric} {where}: recorded {d.recorded}, events say {d.recomputed}"
        )
    verb = "repaired" if repair else "found (dry run)"
    print(f"{len(drift)} drifted aggregates {verb} in {first}..{last}")  # noqa: T201
    return 1 if drift else 0
