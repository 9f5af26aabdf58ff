"""Postgres projections of subscription workflows (worker role: acts across tenants)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import func, update
from temporalio import activity

from adapters.db import tenants as tenant_repo
from adapters.db.session import Database
from adapters.db.tables import subscriptions
from workflows.io import (
    ProjectionResult,
    RecordCustomerInput,
    RecordCustomerResult,
    SubscriptionProjection,
)


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class SubscriptionStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn(name="record_stripe_customer")
    async def record_stripe_customer(self, input: RecordCustomerInput) -> RecordCustomerResult:
        async with self._db.tenant_transaction(UUID(input.tenant_id)) as conn:
            await tenant_repo.set_stripe_customer(conn, UUID(input.tenant_id), input.customer_id)
        return RecordCustomerResult(recorded=True)

    @activity.defn(name="project_subscription")
    async def project_subscription(self, input: SubscriptionProjection) -> ProjectionResult:
        """Write the workflow's view of the subscription; an older version never overwrites a
        newer one (a retried activity can land after a later one)."""
        async with self._db.tenant_transaction(UUID(input.tenant_id)) as conn:
            result = await conn.execute(
                update(subscriptions)
                .where(
                    subscriptions.c.id == UUID(input.subscription_id),
                    subscriptions.c.version < input.version,
                )
                .values(
                    version=input.version,
                    status=input.status,
                    plan_id=UUID(input.plan_id),
                    plan_code=input.plan_code,
                    interval=input.interval,
                    current_period_start=_ts(input.current_period_start),
                    current_period_end=_ts(input.current_period_end),
                    trial_end=_ts(input.trial_end),
                    cancel_at_period_end=input.cancel_at_period_end,
                    canceled_at=_ts(input.canceled_at),
                    paused_at=_ts(input.paused_at),
                    resume_at=_ts(input.resume_at),
                    pending_change=input.pending_change,
                    clock_wall_origin=_ts(input.clock_wall_origin),
                    clock_business_origin=_ts(input.clock_business_origin),
                    time_scale=input.time_scale,
                    updated_at=func.now(),
                )
            )
        return ProjectionResult(applied=result.rowcount == 1)
