"""Driving subscription workflows on the time-skipping server."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import select
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from adapters.db.tables import invoice_items, invoices, subscription_changes, subscriptions
from tests.factories.subscription_workflows import SubscriptionFixture
from tests.harness import Databases
from workflows.subscription import SubscriptionWorkflow
from workflows.subscription_io import SubscriptionState

Handle = WorkflowHandle[SubscriptionWorkflow, Any]


async def start(env: WorkflowEnvironment, sub: SubscriptionFixture, task_queue: str) -> Handle:
    return await env.client.start_workflow(
        SubscriptionWorkflow.run, sub.input, id=sub.workflow_id, task_queue=task_queue
    )


async def state(handle: Handle) -> SubscriptionState:
    return await handle.query(SubscriptionWorkflow.state)


async def until(
    env: WorkflowEnvironment,
    handle: Handle,
    predicate: Callable[[SubscriptionState], bool],
    *,
    polls: int = 300,
) -> SubscriptionState:
    """Poll the state; each poll skips one second of test time, so activity retry backoffs
    pass instantly while business dates barely move."""
    current = await state(handle)
    for _ in range(polls):
        if predicate(current):
            return current
        await env.sleep(timedelta(seconds=1))
        current = await state(handle)
    raise AssertionError(f"state never matched: {current}")


async def to_next_boundary(env: WorkflowEnvironment, handle: Handle) -> SubscriptionState:
    """Skip test time to just past the next deadline and wait until the workflow handled it."""
    before = await state(handle)
    deadline = before.trial_end if before.status == "trialing" else before.current_period_end
    if before.status == "paused":
        deadline = before.resume_at
    assert deadline is not None, before
    assert before.business_now is not None
    gap = datetime.fromisoformat(deadline) - datetime.fromisoformat(before.business_now)
    await env.sleep(gap + timedelta(seconds=1))
    return await until(
        env,
        handle,
        lambda s: (
            (s.version > before.version and s.current_period_end != before.current_period_end)
            or s.status != before.status
        ),
    )


async def db_invoices(dbs: Databases, subscription_id: str) -> list[dict[str, Any]]:
    async with dbs.admin.transaction() as conn:
        rows = await conn.execute(
            select(invoices)
            .where(invoices.c.subscription_id == UUID(subscription_id))
            .order_by(invoices.c.created_at)
        )
        return [dict(r._mapping) for r in rows]


async def db_items(dbs: Databases, invoice_id: UUID) -> list[dict[str, Any]]:
    async with dbs.admin.transaction() as conn:
        rows = await conn.execute(
            select(invoice_items)
            .where(invoice_items.c.invoice_id == invoice_id)
            .order_by(invoice_items.c.position)
        )
        return [dict(r._mapping) for r in rows]


async def db_changes(dbs: Databases, subscription_id: str) -> list[str]:
    async with dbs.admin.transaction() as conn:
        rows = await conn.execute(
            select(subscription_changes.c.kind)
            .where(subscription_changes.c.subscription_id == UUID(subscription_id))
            .order_by(subscription_changes.c.id)
        )
        return [r.kind for r in rows]


async def db_subscription(dbs: Databases, subscription_id: str) -> dict[str, Any]:
    async with dbs.admin.transaction() as conn:
        row = (
            await conn.execute(
                select(subscriptions).where(subscriptions.c.id == UUID(subscription_id))
            )
        ).one()
        return dict(row._mapping)
