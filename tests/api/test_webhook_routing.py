"""Webhooks routed at acceptance (ADR 0024), on the real stack: events about an invoice the
engine has reach its subscription in one signal, exactly once whatever their order and
duplicates, and the echoes of the engine's own calls are settled without any workflow."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from adapters.db.tables import webhook_events
from adapters.stripe_fake import FakeStripeGateway
from services.context import Services
from tests.api.test_billing_api import _until
from tests.api.test_charges import declined_charge
from tests.api.test_credit_notes import _stripe_invoice_id
from tests.factories.stripe_events import (
    accept_test_webhooks,
    invoice_object,
    stripe_event,
)
from tests.factories.tenants import TenantWithKey
from tests.harness import Databases
from tests.replay.recording import record
from tests.webhooks.test_stripe_webhooks import post_event, processed

ORDERS = {
    # The payment's events first, then the echoes of the engine's failed attempt.
    "paid first": ["paid", "succeeded", "paid", "failed", "finalized", "succeeded"],
    # The echoes first, duplicates between.
    "echoes first": ["failed", "finalized", "succeeded", "failed", "paid", "succeeded"],
}


async def _workflow_exists(env: WorkflowEnvironment, workflow_id: str) -> bool:
    try:
        await env.client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status is not RPCStatusCode.NOT_FOUND:
            raise
        return False
    return True


async def _chased_invoice(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
) -> tuple[TenantWithKey, str, str, str, dict[str, Any]]:
    """Test-signed webhooks accepted, and a declined one-off charge: its invoice is open, the
    engine attempted it, dunning chases it. (tenant, invoice id, Stripe invoice id, Stripe
    customer id, the subscription as the API shows it)."""
    accept_test_webhooks(services)
    tenant, _, invoice_id = await declined_charge(api, dbs, workflow_env, services, stripe_fake)
    stripe_invoice_id = await _stripe_invoice_id(dbs, invoice_id)
    account = (await api.get("/api/billing/account", headers=tenant.headers)).json()
    sub = (await api.get("/api/billing/subscription", headers=tenant.headers)).json()
    return tenant, invoice_id, stripe_invoice_id, account["stripe_customer_id"], sub


@pytest.mark.parametrize("order", sorted(ORDERS))
@pytest.mark.usefixtures("workers")
async def test_action_events_reach_their_subscription_once_and_echoes_start_nothing(
    order: str,
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
) -> None:
    tenant, invoice_id, stripe_invoice_id, customer_id, sub = await _chased_invoice(
        api, dbs, workflow_env, services, stripe_fake
    )
    # The tenant pays it on Stripe's hosted page, outside the engine.
    assert (await stripe_fake.pay_invoice(stripe_invoice_id, "hosted-page")).succeeded
    charges = len(stripe_fake.charges)

    def obj(status: str) -> dict[str, Any]:
        return invoice_object(
            stripe_invoice_id, customer=customer_id, status=status,
            tenant_id=str(tenant.id), subscription_id=sub["id"], invoice_id=invoice_id,
            amount_paid=25000 if status == "paid" else 0,
        )  # fmt: skip

    events = {
        "paid": stripe_event("invoice.paid", obj("paid")),
        "succeeded": stripe_event("invoice.payment_succeeded", obj("paid")),
        "failed": stripe_event("invoice.payment_failed", obj("open")),
        "finalized": stripe_event("invoice.finalized", obj("open")),
    }
    for name in ORDERS[order]:
        assert (await post_event(api, events[name])).status_code == 200

    await _until(api, tenant, lambda b: b["status"] == "active")
    invoice = (await api.get(f"/api/billing/invoices/{invoice_id}", headers=tenant.headers)).json()
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 25000)
    assert len(stripe_fake.charges) == charges  # nothing charged again
    history = (await api.get("/api/billing/subscription/history", headers=tenant.headers)).json()
    assert [h["kind"] for h in history].count("payment_recovered") == 1
    async with dbs.admin.transaction() as conn:
        rows = {
            r.stripe_event_id: (r.status, r.tenant_id, r.last_error)
            for r in await conn.execute(
                select(
                    webhook_events.c.stripe_event_id,
                    webhook_events.c.status,
                    webhook_events.c.tenant_id,
                    webhook_events.c.last_error,
                ).where(webhook_events.c.stripe_event_id.in_([e["id"] for e in events.values()]))
            )
        }
    for name, event in events.items():
        status, tenant_id, detail = rows[event["id"]]
        assert (status, tenant_id) == ("processed", tenant.id), name
        # Routed at acceptance: no `stripe_event` run for any of them.
        assert not await _workflow_exists(workflow_env, f"stripe-event:{event['id']}"), name
    # The echoes say why nothing was done (once the payment was applied: it is paid).
    for name, why in (("failed", "own collection attempt failed"), ("finalized", "no payment")):
        detail = rows[events[name]["id"]][2]
        assert why in detail or "already paid" in detail, (name, detail)


@pytest.mark.usefixtures("workers")
async def test_a_payment_event_is_checked_against_stripe_in_the_subscription(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
) -> None:
    """`charge.succeeded` says nothing of the invoice: it is signalled with `reread`, and the
    subscription, which still has the invoice open, re-reads it from Stripe (paid) and settles
    it through its dunning run."""
    tenant, invoice_id, stripe_invoice_id, customer_id, sub = await _chased_invoice(
        api, dbs, workflow_env, services, stripe_fake
    )
    assert (await stripe_fake.pay_invoice(stripe_invoice_id, "hosted-page")).succeeded
    reads_before = sum(1 for c in stripe_fake.calls if c.method == "retrieve_invoice")
    charge = {"id": "ch_hosted", "object": "charge", "invoice": stripe_invoice_id,
              "customer": customer_id, "amount": 25000}  # fmt: skip
    event = stripe_event("charge.succeeded", charge)
    assert (await post_event(api, event)).status_code == 200

    await _until(api, tenant, lambda b: b["status"] == "active")
    invoice = (await api.get(f"/api/billing/invoices/{invoice_id}", headers=tenant.headers)).json()
    assert invoice["status"] == "paid"
    assert not await _workflow_exists(workflow_env, f"stripe-event:{event['id']}")
    # The subscription re-read the invoice (and its dunning run did, on being told).
    assert sum(1 for c in stripe_fake.calls if c.method == "retrieve_invoice") >= reads_before + 2
    await record(
        workflow_env.client.get_workflow_handle(f"subscription:{sub['id']}"),
        "subscription_reread_in_subscription",
    )


@pytest.mark.usefixtures("workers")
async def test_an_event_for_a_subscription_that_is_not_running_takes_the_workflow(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
) -> None:
    """The signal finds no running subscription (NOT_FOUND): the event goes down the
    `stripe_event` workflow, which records why nothing was applied; nothing is lost."""
    tenant, invoice_id, stripe_invoice_id, customer_id, sub = await _chased_invoice(
        api, dbs, workflow_env, services, stripe_fake
    )
    await workflow_env.client.get_workflow_handle(f"subscription:{sub['id']}").terminate("test")
    paid = invoice_object(
        stripe_invoice_id, customer=customer_id, status="paid",
        tenant_id=str(tenant.id), subscription_id=sub["id"], invoice_id=invoice_id,
        amount_paid=25000,
    )  # fmt: skip
    event = stripe_event("invoice.paid", paid)
    assert (await post_event(api, event)).status_code == 200
    result = await processed(workflow_env.client, event["id"])
    assert result.status == "processed"
    assert "not running" in (result.detail or "")
