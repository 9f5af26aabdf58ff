"""A tenant's erasure (ADR 0018) resumes after its worker dies mid-step: the worker stops after
Stripe deleted the customer and before the activity reported, so its workflow cache and the
in-flight activity are lost. A new worker replays the erasure from its history, runs the Stripe
step again with the same idempotency keys (Stripe's state is already right), and finishes;
nothing is done twice. On the dev server: the Java time-skipping server keeps sending the
workflow's next task to the dead worker's sticky queue, where a real server falls back to the
shared queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select, text
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.db.tables import audit_log
from adapters.stripe_fake import FakeStripeGateway
from config import Settings
from devstack.temporal import FAIRNESS_FLAGS
from services.context import Services
from tests.api.test_erasure import _books, _erased, _personal_data_left, _tenant
from tests.factories.tenants import operator_headers
from tests.harness import Databases, venv_executable
from worker import build_workers
from workflows import search_attributes


@pytest.fixture
async def workflow_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_executable("temporal"),
        search_attributes=list(search_attributes.ALL),
        dev_server_extra_args=FAIRNESS_FLAGS,
        ui=False,
    )
    yield env
    await env.shutdown()


async def test_an_erasure_resumes_after_its_worker_dies_mid_step(
    api: httpx.AsyncClient,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    services: Services,
    workflow_env: WorkflowEnvironment,
    settings: Settings,
) -> None:
    first = _start_workers(workflow_env, dbs, stripe_fake, settings)
    tenant = await _tenant(api, dbs)
    account = (await api.get("/api/billing/account", headers=tenant.headers)).json()
    customer_id = account["stripe_customer_id"]
    books = await _books(dbs, tenant.id)

    deleted = asyncio.Event()
    real_delete = stripe_fake.delete_customer

    async def delete_then_die(customer: str, idempotency_key: str) -> None:
        await real_delete(customer, idempotency_key=idempotency_key)
        if not deleted.is_set():  # the first time: applied at Stripe, never reported
            deleted.set()
            await asyncio.Event().wait()

    stripe_fake.delete_customer = delete_then_die  # type: ignore[method-assign]
    op = await operator_headers(dbs)
    url = f"/api/billing/operator/tenants/{tenant.id}/erase"
    assert (await api.post(url, json={"reason": "kill test"}, headers=op)).status_code == 202
    await asyncio.wait_for(deleted.wait(), timeout=30)
    assert customer_id not in {c.id for c in stripe_fake.customers}
    await _stop_workers(first)

    second = _start_workers(workflow_env, dbs, stripe_fake, settings)
    try:
        done = await _erased(api, url, op)
    finally:
        await _stop_workers(second)
    assert [s["step"] for s in done["steps"]] == ["cancel", "stripe", "revoke", "tombstone"]
    assert stripe_fake.keys_for("delete_customer") == [f"delete-customer:{customer_id}"] * 2
    assert await _personal_data_left(dbs) == []
    assert set(books) <= set(await _books(dbs, tenant.id))
    async with dbs.admin.transaction() as conn:
        erased = await conn.scalar(
            select(text("count(*)"))
            .select_from(audit_log)
            .where(audit_log.c.tenant_id == tenant.id, audit_log.c.action == "tenant.erased")
        )
        canceled = await conn.scalar(
            select(text("count(*)"))
            .select_from(audit_log)
            .where(
                audit_log.c.tenant_id == tenant.id, audit_log.c.action == "subscription.canceled"
            )
        )
    assert (erased, canceled) == (1, 1)


Running = tuple[list[Worker], list["asyncio.Task[None]"]]


def _start_workers(
    env: WorkflowEnvironment, dbs: Databases, stripe: FakeStripeGateway, settings: Settings
) -> Running:
    built = build_workers(
        env.client,
        db=dbs.worker,
        gateway=stripe,
        task_queue=settings.task_queue,
        stripe_task_queue=settings.stripe_task_queue,
        stripe_activities_per_second=settings.stripe_activities_per_second,
        export_dir=settings.exports_path(),
    )
    return built, [asyncio.create_task(w.run()) for w in built]


async def _stop_workers(running: Running) -> None:
    """Stop at once: the in-flight activity is abandoned, and the workflow cache goes with the
    worker."""
    workers, tasks = running
    await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)
