"""Postgres projections of subscription workflows (worker role: acts across tenants)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from temporalio import activity

from activities.errors import domain_errors
from adapters.db import subscriptions as subscription_repo
from adapters.db import tenants as tenant_repo
from adapters.db.session import Database
from workflows.shared_io import ProjectionResult
from workflows.subscription_io import (
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
    @domain_errors
    async def record_stripe_customer(self, input: RecordCustomerInput) -> RecordCustomerResult:
        async with self._db.tenant_transaction(UUID(input.tenant_id)) as conn:
            await tenant_repo.set_stripe_customer(conn, UUID(input.tenant_id), input.customer_id)
        return RecordCustomerResult(recorded=True)

    @activity.defn(name="project_subscription")
    @domain_errors
    async def project_subscription(self, input: SubscriptionProjection) -> ProjectionResult:
        """Write the workflow's view of the subscription; an older version never overwrites a
        newer one (a retried activity can land after a later one)."""
        async with self._db.tenant_transaction(UUID(input.tenant_id)) as conn:
            applied = await subscription_repo.project_subscription(conn, input)
        return ProjectionResult(applied=applied)
