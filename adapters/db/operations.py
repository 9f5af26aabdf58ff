"""Counts across every tenant for the operators' gauges (`adapters/metrics.py`): how old the
oldest unprocessed webhook is, open grace windows, suspended tenants, subscriptions by plan and
status. Read by the worker's refresher as the BYPASSRLS worker role."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import grace_periods, subscriptions, tenants, webhook_events
from adapters.db.webhook_inbox import FINAL_STATUSES


@dataclass(frozen=True)
class Snapshot:
    oldest_unprocessed_webhook: datetime | None
    open_grace_windows: dict[str, int] = field(default_factory=dict)
    suspended_tenants: int = 0
    subscriptions: dict[tuple[str, str], int] = field(default_factory=dict)


async def snapshot(conn: AsyncConnection) -> Snapshot:
    oldest = await conn.scalar(
        select(func.min(webhook_events.c.received_at)).where(
            webhook_events.c.status.not_in(sorted(FINAL_STATUSES))
        )
    )
    grace = await conn.execute(
        select(grace_periods.c.kind, func.count())
        .where(grace_periods.c.resolved_at.is_(None))
        .group_by(grace_periods.c.kind)
    )
    suspended = await conn.scalar(
        select(func.count()).select_from(tenants).where(tenants.c.access_status == "suspended")
    )
    subs = await conn.execute(
        select(subscriptions.c.plan_code, subscriptions.c.status, func.count()).group_by(
            subscriptions.c.plan_code, subscriptions.c.status
        )
    )
    return Snapshot(
        oldest_unprocessed_webhook=oldest,
        open_grace_windows={kind: n for kind, n in grace},
        suspended_tenants=int(suspended or 0),
        subscriptions={(plan, status): n for plan, status, n in subs},
    )
