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

from adapters.db.tables import audit_log
from adapters.stripe_fake import FakeStripeGateway
from config import Settings
from services.context import Services
from tests.api.test_erasure import _books, _erased, _personal_data_left, _tenant
from tests.factories.tenants import operator_headers
from tests.harness import Databases, running_workers, start_dev_server_env


@pytest.fixture
async def workflow_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server_env()
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
    # The first worker stops at the end of this block, the Stripe step in flight.
    async with running_workers(workflow_env.client, dbs, stripe_fake, settings):
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
    async with running_workers(workflow_env.client, dbs, stripe_fake, settings):
        done = await _erased(api, url, op)
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
