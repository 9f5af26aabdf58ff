"""The lost-webhook sweeper (ADR 0013) on the real stack: a renewal's collection is declined,
the customer then pays the invoice outside the engine and the `invoice.paid` webhook never
arrives. The sweep re-reads the invoice from Stripe, applies it as the webhook would have, the
invoice settles, and a second sweep finds nothing left to differ."""

from __future__ import annotations

import uuid
from datetime import timedelta
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from adapters.db import tables
from adapters.stripe_fake import FakeStripeGateway
from config import Settings
from services.context import Services
from tests.api.test_billing_api import _active_standard, _until
from tests.harness import Databases
from tests.replay.recording import record
from workflows.reconcile_stripe import ReconcileStripeWorkflow
from workflows.reconcile_stripe_io import InvoiceDrift, SweepInput, SweepResult


async def _sweep(
    env: WorkflowEnvironment, settings: Settings, recorded_as: str | None = None
) -> SweepResult:
    handle = await env.client.start_workflow(
        ReconcileStripeWorkflow.run,
        SweepInput(min_age_seconds=0, stripe_task_queue=settings.stripe_task_queue),
        id=f"sweep-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
    )
    result = await handle.result()
    if recorded_as:
        await record(handle, recorded_as)
    return result


@pytest.mark.usefixtures("workers")
async def test_the_sweep_settles_an_invoice_whose_paid_webhook_was_dropped(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
) -> None:
    tenant = await _active_standard(api, dbs, workflow_env, services)
    account = (await api.get("/api/billing/account", headers=tenant.headers)).json()
    stripe_fake.decline_next(account["stripe_customer_id"])
    await workflow_env.sleep(timedelta(days=31))
    invoices = await _until(
        api,
        tenant,
        lambda b: len(b["data"]) == 2 and b["data"][0]["status"] == "open",
        "/api/billing/invoices",
    )
    renewal = invoices["data"][0]
    async with dbs.admin.transaction() as conn:
        stripe_invoice_id = await conn.scalar(
            select(tables.invoices.c.stripe_invoice_id).where(
                tables.invoices.c.id == UUID(renewal["id"])
            )
        )
    # Paid by bank transfer; Stripe's invoice.paid webhook is lost on the way.
    stripe_fake.mark_paid_out_of_band(stripe_invoice_id)

    first = await _sweep(workflow_env, settings, recorded_as="reconcile_stripe_applied")

    assert first.checked == 1
    assert first.applied == 1
    assert InvoiceDrift(str(tenant.id), renewal["id"], "status", "open", "paid") in first.drift
    await _until(
        api,
        tenant,
        lambda b: [i["status"] for i in b["data"]] == ["paid", "paid"],
        "/api/billing/invoices",
    )
    await _until(api, tenant, lambda b: b["status"] == "active")
    # Settled once: dunning stopped on the re-read, nothing was charged.
    assert stripe_fake.charges_for(stripe_invoice_id) == []

    second = await _sweep(workflow_env, settings)
    assert (second.checked, second.applied, second.drift) == (0, 0, [])
