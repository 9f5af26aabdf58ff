"""Soft caps end to end on the time-skipping server: allowed past the limit, a grace window
opens, the metric is blocked when it expires, and an upgrade unblocks it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from sqlalchemy import text
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from billing.usage import period_key
from config import Settings
from tests.factories.subscriptions import change_plan, current_period, make_subscription
from tests.factories.tenants import TenantWithKey, make_tenant
from tests.harness import Databases
from workflows.grace import GraceWindowWorkflow, grace_workflow_id
from workflows.grace_io import GraceExtend, GraceResolve, GraceResult
from workflows.reconcile import ReconcileUsageWorkflow
from workflows.reconcile_io import ReconcileInput

CHECK = "/api/billing/usage/check"


async def send(api: httpx.AsyncClient, tenant: TenantWithKey, key: str, quantity: int) -> None:
    response = await api.post(
        "/api/billing/usage",
        json={
            "metric": "llm_tokens",
            "quantity": quantity,
            "timestamp": datetime.now(UTC).isoformat(),
            "idempotency_key": key,
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text


async def finish(
    env: WorkflowEnvironment,
    handle: WorkflowHandle[GraceWindowWorkflow, GraceResult],
    skip: timedelta,
) -> GraceResult:
    """Skip `skip` of workflow time, then wait (bounded) for the window to close."""
    if skip:
        await env.sleep(skip)
    for _ in range(200):
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            return await handle.result()
        await asyncio.sleep(0.05)
    raise AssertionError("the grace window did not close")


async def grace_row(dbs: Databases, workflow_id: str) -> tuple[object, ...] | None:
    async with dbs.admin.transaction() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT kind, subject, resolution, expires_at - started_at "
                    "FROM grace_periods WHERE workflow_id = :w"
                ),
                {"w": workflow_id},
            )
        ).first()
    return None if row is None else tuple(row)


async def setup(
    dbs: Databases, client: Client
) -> tuple[TenantWithKey, object, WorkflowHandle[GraceWindowWorkflow, GraceResult]]:
    tenant = await make_tenant(dbs)
    period = current_period()
    subscription_id = await make_subscription(dbs, tenant.id, plan_code="standard", period=period)
    handle = client.get_workflow_handle_for(
        GraceWindowWorkflow.run,
        grace_workflow_id(str(tenant.id), "llm_tokens", period_key(period[0])),
    )
    return tenant, subscription_id, handle  # type: ignore[return-value]


async def test_soft_cap_grace_then_blocked_then_unblocked_by_upgrade(
    grace_api: httpx.AsyncClient,
    dbs: Databases,
    grace_env: WorkflowEnvironment,
    grace_workers: list[Worker],
) -> None:
    api, workflow_env = grace_api, grace_env
    tenant, subscription_id, handle = await setup(dbs, workflow_env.client)
    await send(api, tenant, "a", 900_000)
    await send(api, tenant, "b", 200_000)  # standard: 1,000,000 included, soft cap

    allowed = await api.get(CHECK, params={"metric": "llm_tokens"}, headers=tenant.headers)
    assert allowed.status_code == 200
    assert allowed.json()["in_grace"] is True
    await send(api, tenant, "c", 1)  # more usage past the cap is still recorded

    result = await finish(workflow_env, handle, timedelta(hours=24, minutes=1))
    assert (result.resolution, result.effect_applied) == ("expired", True)
    kind, subject, resolution, length = await grace_row(dbs, handle.id)  # type: ignore[misc]
    assert (kind, subject, resolution, length) == (
        "soft_cap",
        "llm_tokens",
        "expired",
        timedelta(hours=24),
    )

    blocked = await api.get(CHECK, params={"metric": "llm_tokens"}, headers=tenant.headers)
    assert blocked.status_code == 402
    assert blocked.json()["reason"] == "soft_cap_grace_expired"
    assert blocked.headers["X-Quota-Used"] == "1100001"

    await change_plan(dbs, subscription_id, "enterprise")  # type: ignore[arg-type]
    upgraded = await api.get(CHECK, params={"metric": "llm_tokens"}, headers=tenant.headers)
    assert upgraded.status_code == 200
    assert upgraded.headers["X-Quota-Limit"] == "10000000"


async def test_resolving_the_window_prevents_the_block(
    grace_api: httpx.AsyncClient,
    dbs: Databases,
    grace_env: WorkflowEnvironment,
    grace_workers: list[Worker],
) -> None:
    api, workflow_env = grace_api, grace_env
    tenant, _, handle = await setup(dbs, workflow_env.client)
    await send(api, tenant, "a", 1_000_001)
    status = await handle.execute_update(
        GraceWindowWorkflow.extend, GraceExtend(seconds=3600, actor="operator:test")
    )
    started = datetime.fromisoformat(status.started_at)
    assert datetime.fromisoformat(status.expires_at) - started == timedelta(hours=25)
    await handle.signal(GraceWindowWorkflow.resolve, GraceResolve("upgraded", "api_key:test"))
    result = await finish(workflow_env, handle, timedelta(0))
    assert (result.resolution, result.effect_applied) == ("upgraded", False)
    row = await grace_row(dbs, handle.id)
    assert row is not None
    assert row[2] == "upgraded"
    check = await api.get(CHECK, params={"metric": "llm_tokens"}, headers=tenant.headers)
    assert check.status_code == 200
    used = Decimal(check.headers["X-Quota-Used"])
    assert used == 1_000_001


async def test_reconciliation_opens_a_window_missed_while_temporal_was_down(
    grace_api: httpx.AsyncClient,
    dbs: Databases,
    grace_env: WorkflowEnvironment,
    grace_workers: list[Worker],
    settings: Settings,
) -> None:
    tenant, _, handle = await setup(dbs, grace_env.client)
    await send(grace_api, tenant, "a", 10)
    # The crossing committed, but starting its window failed: stamp it by hand.
    async with dbs.admin.transaction() as conn:
        await conn.execute(
            text(
                "UPDATE usage_period_counters SET quantity = 1000001, soft_cap_exceeded_at = now() "
                "WHERE tenant_id = :t AND metric = 'llm_tokens'"
            ),
            {"t": tenant.id},
        )
    run = ReconcileInput(first=datetime.now(UTC).date().isoformat(), repair=False)
    result = await grace_env.client.execute_workflow(
        ReconcileUsageWorkflow.run, run, id=f"reconcile-{tenant.id}", task_queue=settings.task_queue
    )
    assert result.grace_windows_opened == 1
    assert (await handle.describe()).id == handle.id
    again = await grace_env.client.execute_workflow(
        ReconcileUsageWorkflow.run,
        run,
        id=f"reconcile-{tenant.id}-2",
        task_queue=settings.task_queue,
    )
    assert again.grace_windows_opened == 0
