"""Subscriptions for workflow tests: the tenant, the subscription row (projections update it),
and the workflow input snapshot, as the API would build them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from adapters.db import plans as plan_repo
from adapters.db import subscriptions as subscription_repo
from adapters.db import tenants as tenant_repo
from tests.harness import Databases
from workflows.subscription import workflow_id
from workflows.subscription_io import PlanSnapshot, SubscriptionInput


async def plan_snapshot(dbs: Databases, code: str) -> PlanSnapshot:
    async with dbs.worker.transaction() as conn:
        plan = await plan_repo.latest_plan(conn, code)
    assert plan is not None, code
    return PlanSnapshot(str(plan.id), plan.code, plan.version, plan.definition)


@dataclass(frozen=True)
class SubscriptionFixture:
    input: SubscriptionInput

    @property
    def workflow_id(self) -> str:
        return workflow_id(self.input.subscription_id)


async def make_subscription(
    dbs: Databases,
    *,
    task_queues: tuple[str, str],
    plan_code: str = "standard",
    interval: str = "month",
    trial_days: int | None = 0,
    payment_method_id: str | None = "pm_card_visa",
    business_start: str | None = None,
    trial_end_policy: str = "pause",
    time_scale: float = 1.0,
) -> SubscriptionFixture:
    snapshot = await plan_snapshot(dbs, plan_code)
    async with dbs.worker.transaction() as conn:
        tenant = await tenant_repo.create_tenant(
            conn, name=f"Tenant {uuid.uuid4().hex[:6]}", email=None
        )
        subscription_id = uuid.uuid4()
        await subscription_repo.insert_subscription(
            conn,
            subscription_id=subscription_id,
            tenant_id=tenant.id,
            plan_id=uuid.UUID(snapshot.plan_id),
            plan_code=plan_code,
            interval=interval,
            currency="usd",
            workflow_id=workflow_id(str(subscription_id)),
        )
    return SubscriptionFixture(
        SubscriptionInput(
            subscription_id=str(subscription_id),
            tenant_id=str(tenant.id),
            tenant_name=tenant.name,
            tenant_email=None,
            plan=snapshot,
            interval=interval,
            stripe_task_queue=task_queues[1],
            actor="tests",
            time_scale=time_scale,
            payment_method_id=payment_method_id,
            trial_days=trial_days,
            trial_end_policy=trial_end_policy,
            business_start=business_start,
        )
    )
