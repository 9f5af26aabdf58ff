"""Subscription rows (the workflow's projection) and their history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.audit import record_audit
from adapters.db.tables import plans, subscription_changes, subscriptions
from workflows.subscription_io import SubscriptionChange, SubscriptionProjection


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
    coupon_code: str | None = None


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
    subscriptions.c.coupon_code,
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
    coupon_code: str | None = None,
) -> None:
    await conn.execute(
        subscriptions.insert().values(
            id=subscription_id,
            coupon_code=coupon_code,
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


async def record_change(conn: AsyncConnection, change: SubscriptionChange) -> bool:
    """One history row and one audit row per change, both or neither (the caller's
    transaction); False when the change key is already recorded (an activity retry)."""
    inserted = await conn.execute(
        insert(subscription_changes)
        .values(
            tenant_id=UUID(change.tenant_id),
            subscription_id=UUID(change.subscription_id),
            kind=change.kind,
            from_status=change.from_status,
            to_status=change.to_status,
            from_plan_code=change.from_plan_code,
            to_plan_code=change.to_plan_code,
            effective_at=_ts(change.effective_at),
            actor=change.actor,
            change_key=change.change_key,
            details=change.details,
        )
        .on_conflict_do_nothing(index_elements=["change_key"])
        .returning(subscription_changes.c.id)
    )
    if inserted.first() is None:
        return False
    await record_audit(
        conn,
        actor=change.actor,
        action=f"subscription.{change.kind}",
        request_id=change.request_id,
        subject_type="subscription",
        subject_id=change.subscription_id,
        tenant_id=UUID(change.tenant_id),
        before={"status": change.from_status, "plan": change.from_plan_code},
        after={"status": change.to_status, "plan": change.to_plan_code or change.from_plan_code},
        details={
            "effective_at": change.effective_at,
            **change.details,
        },
    )
    return True


async def project_subscription(conn: AsyncConnection, p: SubscriptionProjection) -> bool:
    """Write the workflow's view of the subscription; an older version never overwrites a
    newer one (a retried activity can land after a later one). False when nothing was written."""
    result = await conn.execute(
        update(subscriptions)
        .where(
            subscriptions.c.id == UUID(p.subscription_id),
            subscriptions.c.version < p.version,
        )
        .values(
            version=p.version,
            status=p.status,
            plan_id=UUID(p.plan_id),
            plan_code=p.plan_code,
            interval=p.interval,
            current_period_start=_ts(p.current_period_start),
            current_period_end=_ts(p.current_period_end),
            trial_end=_ts(p.trial_end),
            cancel_at_period_end=p.cancel_at_period_end,
            canceled_at=_ts(p.canceled_at),
            paused_at=_ts(p.paused_at),
            resume_at=_ts(p.resume_at),
            pending_change=p.pending_change,
            clock_wall_origin=_ts(p.clock_wall_origin),
            clock_business_origin=_ts(p.clock_business_origin),
            time_scale=p.time_scale,
            updated_at=func.now(),
        )
    )
    return result.rowcount == 1


async def set_reactivated_from(
    conn: AsyncConnection, subscription_id: UUID, reactivated_from: UUID
) -> None:
    await conn.execute(
        update(subscriptions)
        .where(subscriptions.c.id == subscription_id)
        .values(reactivated_from=reactivated_from)
    )


async def latest_subscription_id(conn: AsyncConnection, tenant_id: UUID) -> UUID | None:
    """The tenant's most recent subscription (at most one is live)."""
    found: UUID | None = await conn.scalar(
        select(subscriptions.c.id)
        .where(subscriptions.c.tenant_id == tenant_id)
        .order_by(subscriptions.c.created_at.desc())
        .limit(1)
    )
    return found


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
