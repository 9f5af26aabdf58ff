"""Payment grace end to end on the time-skipping server: access continues until the window
expires, then the quota check answers 402 `payment_overdue`; "paid" gives access back at once;
operators extend, end and waive windows through the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import text
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.temporal import resolve_payment_grace, start_payment_grace
from config import Settings
from tests.factories.subscriptions import current_period, make_subscription
from tests.factories.tenants import TenantWithKey, make_tenant, operator_headers
from tests.harness import Databases
from tests.workflows.payment_grace_parent import GraceParentInput, PaymentGraceParent
from workflows.grace import GraceWindowWorkflow
from workflows.grace_io import GraceResult

CHECK = "/api/billing/usage/check"
WEEK = 7 * 86400.0
Handle = WorkflowHandle[GraceWindowWorkflow, GraceResult]


@pytest.fixture
async def opened(grace_env: WorkflowEnvironment) -> AsyncIterator[list[Handle]]:
    """Windows a test opened; any still running at the end is terminated, because a timer that
    fires for a task queue nobody polls any more holds time skipping back for the next test."""
    handles: list[Handle] = []
    yield handles
    for handle in handles:
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test over")


async def tenant_with_subscription(dbs: Databases) -> TenantWithKey:
    tenant = await make_tenant(dbs)
    await make_subscription(dbs, tenant.id, plan_code="standard", period=current_period())
    return tenant


async def open_window(
    env: WorkflowEnvironment,
    settings: Settings,
    opened: list[Handle],
    tenant: TenantWithKey,
    invoice_id: str,
) -> Handle:
    handle = await start_payment_grace(
        env.client,
        str(tenant.id),
        invoice_id,
        grace_seconds=WEEK,
        actor="workflow:subscription:test",
        task_queue=settings.task_queue,
    )
    opened.append(handle)
    return handle


async def access_status(dbs: Databases, tenant_id: UUID) -> str:
    async with dbs.admin.transaction() as conn:
        status = (
            await conn.execute(
                text("SELECT access_status FROM tenants WHERE id = :t"), {"t": tenant_id}
            )
        ).scalar_one()
    return str(status)


async def wait_status(dbs: Databases, tenant_id: UUID, expected: str) -> None:
    for _ in range(100):
        if await access_status(dbs, tenant_id) == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"tenant never became {expected}: {await access_status(dbs, tenant_id)}")


async def check(api: httpx.AsyncClient, tenant: TenantWithKey) -> httpx.Response:
    return await api.get(CHECK, params={"metric": "llm_tokens"}, headers=tenant.headers)


async def result_of(handle: Handle) -> GraceResult:
    # Poll, through a plain handle: the handle `start_workflow` returns in a time-skipping
    # environment lets the server skip ahead while it waits, and a held payment window has no
    # timer to stop at (it would run into the test server's 10-year execution timeout).
    plain = handle._client.get_workflow_handle_for(GraceWindowWorkflow.run, handle.id)
    for _ in range(200):
        if (await plain.describe()).status != WorkflowExecutionStatus.RUNNING:
            return await plain.result()
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} did not close")


async def grace_row(dbs: Databases, workflow_id: str) -> dict[str, object]:
    async with dbs.admin.transaction() as conn:
        row = (
            await conn.execute(
                text("SELECT * FROM grace_periods WHERE workflow_id = :w"), {"w": workflow_id}
            )
        ).one()
    return dict(row._mapping)


async def test_suspended_at_expiry_then_paid_reactivates_at_once(
    grace_api: httpx.AsyncClient,
    grace_env: WorkflowEnvironment,
    grace_workers: list[Worker],
    dbs: Databases,
    settings: Settings,
    opened: list[Handle],
) -> None:
    tenant = await tenant_with_subscription(dbs)
    invoice_id = str(uuid4())
    handle = await open_window(grace_env, settings, opened, tenant, invoice_id)
    assert handle.id == f"grace:{tenant.id}:payment:{invoice_id}"

    await grace_env.sleep(timedelta(days=6, hours=23))
    assert await access_status(dbs, tenant.id) == "active"
    assert (await check(grace_api, tenant)).status_code == 200

    await grace_env.sleep(timedelta(hours=1, minutes=1))
    await wait_status(dbs, tenant.id, "suspended")
    blocked = await check(grace_api, tenant)
    assert blocked.status_code == 402
    assert blocked.json()["reason"] == "payment_overdue"
    row = await grace_row(dbs, handle.id)
    assert row["resolution"] == "expired"
    assert row["expires_at"] - row["started_at"] == timedelta(days=7)  # type: ignore[operator]
    async with dbs.admin.transaction() as conn:
        actors = (
            (
                await conn.execute(
                    text("SELECT actor FROM audit_log WHERE tenant_id = :t AND action = :a"),
                    {"t": tenant.id, "a": "tenant.suspended"},
                )
            )
            .scalars()
            .all()
        )
    assert actors == [f"workflow:{handle.id}"]
    status = await handle.query(GraceWindowWorkflow.status)
    assert status.effect_in_force is True

    assert await resolve_payment_grace(
        grace_env.client, str(tenant.id), invoice_id, "paid", "workflow:dunning:test"
    )
    result = await result_of(handle)
    assert (result.resolution, result.effect_applied, result.effect_lifted) == ("paid", True, True)
    assert await access_status(dbs, tenant.id) == "active"
    assert (await check(grace_api, tenant)).status_code == 200
    row = await grace_row(dbs, handle.id)
    assert (row["resolution"], row["actor"]) == ("paid", "workflow:dunning:test")
    # The window is closed: a late second "paid" finds nothing to settle.
    assert not await resolve_payment_grace(
        grace_env.client, str(tenant.id), invoice_id, "paid", "x"
    )


async def test_paid_before_expiry_never_suspends(
    grace_env: WorkflowEnvironment,
    grace_workers: list[Worker],
    dbs: Databases,
    settings: Settings,
    opened: list[Handle],
) -> None:
    tenant = await tenant_with_subscription(dbs)
    invoice_id = str(uuid4())
    handle = await open_window(grace_env, settings, opened, tenant, invoice_id)
    await grace_env.sleep(timedelta(days=2))
    await resolve_payment_grace(grace_env.client, str(tenant.id), invoice_id, "paid", "t")
    result = await result_of(handle)
    assert (result.resolution, result.effect_applied) == ("paid", False)
    await grace_env.sleep(timedelta(days=8))
    assert await access_status(dbs, tenant.id) == "active"
    assert (await grace_row(dbs, handle.id))["resolution"] == "paid"


async def test_another_unpaid_invoice_keeps_the_tenant_suspended(
    grace_env: WorkflowEnvironment,
    grace_workers: list[Worker],
    dbs: Databases,
    settings: Settings,
    opened: list[Handle],
) -> None:
    tenant = await tenant_with_subscription(dbs)
    first, second = str(uuid4()), str(uuid4())
    handle_a = await open_window(grace_env, settings, opened, tenant, first)
    await grace_env.sleep(timedelta(days=1))
    handle_b = await open_window(grace_env, settings, opened, tenant, second)
    await grace_env.sleep(timedelta(days=7, minutes=1))
    await wait_status(dbs, tenant.id, "suspended")
    await wait_status_row(dbs, handle_b.id, "expired")

    await resolve_payment_grace(grace_env.client, str(tenant.id), first, "paid", "t")
    assert (await result_of(handle_a)).effect_lifted is False
    assert await access_status(dbs, tenant.id) == "suspended"

    await resolve_payment_grace(grace_env.client, str(tenant.id), second, "paid", "t")
    assert (await result_of(handle_b)).effect_lifted is True
    assert await access_status(dbs, tenant.id) == "active"


async def wait_status_row(dbs: Databases, workflow_id: str, resolution: str) -> None:
    for _ in range(100):
        if (await grace_row(dbs, workflow_id))["resolution"] == resolution:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{workflow_id} never became {resolution}")


async def test_duplicate_starts_are_one_window(
    grace_api: httpx.AsyncClient,
    grace_env: WorkflowEnvironment,
    grace_workers: list[Worker],
    dbs: Databases,
    settings: Settings,
    opened: list[Handle],
) -> None:
    tenant = await tenant_with_subscription(dbs)
    invoice_id = str(uuid4())
    handles = await asyncio.gather(
        *(open_window(grace_env, settings, opened, tenant, invoice_id) for _ in range(5))
    )
    assert len({h.result_run_id for h in handles}) == 1
    await grace_id(grace_api, await operator_headers(dbs), tenant.id)  # the row is written
    async with dbs.admin.transaction() as conn:
        count = (
            await conn.execute(
                text("SELECT count(*) FROM grace_periods WHERE tenant_id = :t"), {"t": tenant.id}
            )
        ).scalar_one()
    assert count == 1


async def grace_id(api: httpx.AsyncClient, headers: dict[str, str], tenant_id: UUID) -> str:
    for _ in range(100):
        listed = await api.get(
            f"/api/billing/operator/tenants/{tenant_id}/grace-periods", headers=headers
        )
        assert listed.status_code == 200
        if listed.json()["items"]:
            return str(listed.json()["items"][0]["id"])
        await asyncio.sleep(0.05)
    raise AssertionError("the window was never recorded")


async def test_operator_extend_moves_the_suspension(
    grace_api: httpx.AsyncClient,
    grace_env: WorkflowEnvironment,
    grace_workers: list[Worker],
    dbs: Databases,
    settings: Settings,
    opened: list[Handle],
) -> None:
    tenant = await tenant_with_subscription(dbs)
    handle = await open_window(grace_env, settings, opened, tenant, str(uuid4()))
    headers = await operator_headers(dbs)
    gid = await grace_id(grace_api, headers, tenant.id)
    base = f"/api/billing/operator/tenants/{tenant.id}/grace-periods/{gid}"
    extended = await grace_api.post(f"{base}/extend", json={"days": 2}, headers=headers)
    assert extended.status_code == 200, extended.text
    body = extended.json()
    length = datetime.fromisoformat(body["expires_at"]) - datetime.fromisoformat(body["started_at"])
    assert length == timedelta(days=9)

    await grace_env.sleep(timedelta(days=7, hours=1))  # past the old deadline
    assert await access_status(dbs, tenant.id) == "active"
    await grace_env.sleep(timedelta(days=2))
    await wait_status(dbs, tenant.id, "suspended")
    row = await grace_row(dbs, handle.id)
    assert row["expires_at"] - row["started_at"] == timedelta(days=9)  # type: ignore[operator]
    async with dbs.admin.transaction() as conn:
        audited = (
            await conn.execute(
                text("SELECT details FROM audit_log WHERE tenant_id = :t AND action = :a"),
                {"t": tenant.id, "a": "grace.extended"},
            )
        ).scalar_one()
    assert audited["seconds"] == 2 * 86400
    # An expired window can no longer be extended.
    again = await grace_api.post(f"{base}/extend", json={"hours": 1}, headers=headers)
    assert again.status_code == 409


async def test_operator_end_suspends_now_and_waive_lifts(
    grace_api: httpx.AsyncClient,
    grace_env: WorkflowEnvironment,
    grace_workers: list[Worker],
    dbs: Databases,
    settings: Settings,
    opened: list[Handle],
) -> None:
    tenant = await tenant_with_subscription(dbs)
    handle = await open_window(grace_env, settings, opened, tenant, str(uuid4()))
    headers = await operator_headers(dbs)
    gid = await grace_id(grace_api, headers, tenant.id)
    base = f"/api/billing/operator/tenants/{tenant.id}/grace-periods/{gid}"
    ended = await grace_api.post(f"{base}/end", json={"reason": "fraud"}, headers=headers)
    assert ended.status_code == 202, ended.text
    await wait_status(dbs, tenant.id, "suspended")
    await wait_status_row(dbs, handle.id, "ended")
    assert (await check(grace_api, tenant)).status_code == 402

    waived = await grace_api.post(f"{base}/resolve", headers=headers)
    assert waived.status_code == 202, waived.text
    result = await result_of(handle)
    assert (result.resolution, result.effect_lifted) == ("waived", True)
    assert await access_status(dbs, tenant.id) == "active"
    assert (await grace_api.post(f"{base}/resolve", headers=headers)).status_code == 409


async def test_a_parent_that_continues_as_new_opens_and_settles_by_id(
    grace_env: WorkflowEnvironment,
    grace_workers: list[Worker],
    dbs: Databases,
    settings: Settings,
    opened: list[Handle],
) -> None:
    tenant = await tenant_with_subscription(dbs)
    invoice_id = str(uuid4())
    window = grace_env.client.get_workflow_handle_for(
        GraceWindowWorkflow.run, f"grace:{tenant.id}:payment:{invoice_id}"
    )
    opened.append(window)
    parent_queue = f"{settings.task_queue}-parent"
    async with Worker(grace_env.client, task_queue=parent_queue, workflows=[PaymentGraceParent]):
        parent = await grace_env.client.start_workflow(
            PaymentGraceParent.run,
            GraceParentInput(str(tenant.id), invoice_id, WEEK, settings.task_queue),
            id=f"parent-{invoice_id}",
            task_queue=parent_queue,
        )
        await grace_env.sleep(timedelta(days=7, minutes=1))
        await wait_status(dbs, tenant.id, "suspended")
        await parent.signal(PaymentGraceParent.invoice_paid)
        plain = grace_env.client.get_workflow_handle_for(PaymentGraceParent.run, parent.id)
        for _ in range(200):
            if (await plain.describe()).status != WorkflowExecutionStatus.RUNNING:
                break
            await asyncio.sleep(0.05)
        result = await plain.result()
    assert result.opened == (True, False)
    assert result.resolved is True
    window_result = await result_of(window)
    assert (window_result.resolution, window_result.effect_lifted) == ("paid", True)
    assert await access_status(dbs, tenant.id) == "active"
