"""Live subscriptions inserted straight into Postgres, so usage tests need no subscription
workflow: a tenant on a plan with an open billing period."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

from sqlalchemy import text

from adapters.db.plans import latest_plan
from tests.harness import Databases


def current_period(days_before: int = 5, length_days: int = 30) -> tuple[datetime, datetime]:
    """A period that started `days_before` days ago (whole seconds, UTC)."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days_before)
    return start, start + timedelta(days=length_days)


async def make_subscription(
    dbs: Databases,
    tenant_id: UUID,
    *,
    plan_code: str = "standard",
    period: tuple[datetime, datetime] | None = None,
    status: str = "active",
) -> UUID:
    start, end = period or current_period()
    subscription_id = uuid.uuid4()
    async with dbs.worker.transaction() as conn:
        plan = await latest_plan(conn, plan_code)
        assert plan is not None, plan_code
        await conn.execute(
            text(
                "INSERT INTO subscriptions (id, tenant_id, plan_id, plan_code, interval, currency, "
                "status, workflow_id, current_period_start, current_period_end) VALUES "
                "(:id, :t, :p, :code, 'month', 'usd', :status, :wf, :start, :end)"
            ),
            {
                "id": subscription_id,
                "t": tenant_id,
                "p": plan.id,
                "code": plan_code,
                "status": status,
                "wf": f"subscription:{subscription_id}",
                "start": start,
                "end": end,
            },
        )
    return subscription_id


async def change_plan(dbs: Databases, subscription_id: UUID, plan_code: str) -> None:
    """What an upgrade's projection does to the row (issue 3's workflow writes it for real)."""
    async with dbs.worker.transaction() as conn:
        plan = await latest_plan(conn, plan_code)
        assert plan is not None, plan_code
        await conn.execute(
            text("UPDATE subscriptions SET plan_id = :p, plan_code = :c WHERE id = :id"),
            {"p": plan.id, "c": plan_code, "id": subscription_id},
        )


async def set_access_status(dbs: Databases, tenant_id: UUID, status: str) -> None:
    async with dbs.worker.transaction() as conn:
        await conn.execute(
            text("UPDATE tenants SET access_status = :s WHERE id = :t"),
            {"s": status, "t": tenant_id},
        )
