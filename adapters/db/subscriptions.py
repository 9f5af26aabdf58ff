"""Subscription rows (the workflow's projection) and their history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import plans, subscriptions


@dataclass(frozen=True, slots=True)
class SubscriptionRow:
    id: UUID
    tenant_id: UUID
    plan_id: UUID
    plan_code: str
    plan_version: int
    interval: str
    currency: str
    status: str
    workflow_id: str
    current_period_start: datetime | None
    current_period_end: datetime | None
    trial_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    version: int
    created_at: datetime
    updated_at: datetime


_SELECT = select(
    subscriptions.c.id,
    subscriptions.c.tenant_id,
    subscriptions.c.plan_id,
    subscriptions.c.plan_code,
    plans.c.version.label("plan_version"),
    subscriptions.c.interval,
    subscriptions.c.currency,
    subscriptions.c.status,
    subscriptions.c.workflow_id,
    subscriptions.c.current_period_start,
    subscriptions.c.current_period_end,
    subscriptions.c.trial_end,
    subscriptions.c.cancel_at_period_end,
    subscriptions.c.canceled_at,
    subscriptions.c.version,
    subscriptions.c.created_at,
    subscriptions.c.updated_at,
).join_from(subscriptions, plans, subscriptions.c.plan_id == plans.c.id)


async def insert_subscription(
    conn: AsyncConnection,
    *,
    subscription_id: UUID,
    tenant_id: UUID,
    plan_id: UUID,
    plan_code: str,
    interval: str,
    currency: str,
    workflow_id: str,
) -> None:
    await conn.execute(
        subscriptions.insert().values(
            id=subscription_id,
            tenant_id=tenant_id,
            plan_id=plan_id,
            plan_code=plan_code,
            interval=interval,
            currency=currency,
            status="incomplete",
            workflow_id=workflow_id,
        )
    )


async def get_live_subscription(conn: AsyncConnection, tenant_id: UUID) -> SubscriptionRow | None:
    """The tenant's subscription that is not canceled (at most one: a partial unique index)."""
    row = (
        await conn.execute(
            _SELECT.where(
                subscriptions.c.tenant_id == tenant_id, subscriptions.c.status != "canceled"
            )
        )
    ).first()
    return SubscriptionRow(**row._mapping) if row else None


async def get_subscription(conn: AsyncConnection, subscription_id: UUID) -> SubscriptionRow | None:
    row = (await conn.execute(_SELECT.where(subscriptions.c.id == subscription_id))).first()
    return SubscriptionRow(**row._mapping) if row else None


async def latest_subscription(conn: AsyncConnection, tenant_id: UUID) -> SubscriptionRow | None:
    """The live subscription, else the most recently created one (e.g. canceled)."""
    live = await get_live_subscription(conn, tenant_id)
    if live is not None:
        return live
    row = (
        await conn.execute(
            _SELECT.where(subscriptions.c.tenant_id == tenant_id)
            .order_by(subscriptions.c.created_at.desc())
            .limit(1)
        )
    ).first()
    return SubscriptionRow(**row._mapping) if row else None
