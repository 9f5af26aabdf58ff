"""Disputes (ADR 0021) on the real stack: `charge.dispute.created` for an invoice's payment
marks the invoice disputed, notifies the tenant's endpoints and, with the `suspend` policy,
suspends the tenant; `charge.dispute.closed` closes it (won: access back) or marks it lost; a
repeated event changes nothing; everything is audited as the Stripe event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.db.tables import audit_log, invoices, notification_deliveries
from adapters.stripe_fake import FakeStripeGateway
from config import Settings
from services.context import Services
from tests.api.test_billing_api import _active_standard
from tests.factories.stripe_events import accept_test_webhooks, stripe_event
from tests.factories.tenants import TenantWithKey
from tests.harness import Databases, running_workers
from tests.replay.recording import record
from tests.webhooks.test_stripe_webhooks import post_event, processed


@pytest.fixture
async def suspending(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
) -> AsyncIterator[list[Worker]]:
    """Workers whose dispute policy suspends the tenant."""
    async with running_workers(
        workflow_env.client, dbs, stripe_fake, settings, dispute_policy="suspend"
    ) as built:
        yield built


async def _disputed_tenant(
    api: httpx.AsyncClient, dbs: Databases, env: WorkflowEnvironment, services: Services,
    stripe: FakeStripeGateway,
) -> tuple[TenantWithKey, dict[str, Any], str]:  # fmt: skip
    """An active tenant with a paid invoice, a notification endpoint, and the payment intent
    that paid the invoice."""
    tenant = await _active_standard(api, dbs, env, services)
    endpoint = await api.post(
        "/api/billing/notification-endpoints",
        json={"url": "https://hooks.example.test/disputes"},
        headers=tenant.headers,
    )
    assert endpoint.status_code == 201, endpoint.text
    invoice = (await api.get("/api/billing/invoices", headers=tenant.headers)).json()["data"][0]
    async with dbs.admin.transaction() as conn:
        stripe_invoice_id = await conn.scalar(
            select(invoices.c.stripe_invoice_id).where(invoices.c.id == invoice["id"])
        )
    accept_test_webhooks(services)
    return tenant, invoice, stripe.payment_intent_of(str(stripe_invoice_id))


def _dispute(payment_intent: str, status: str) -> dict[str, Any]:
    return {
        "id": "dp_test_1", "object": "dispute", "charge": "ch_test_1",
        "payment_intent": payment_intent, "amount": 4900, "currency": "usd",
        "reason": "fraudulent", "status": status,
    }  # fmt: skip


async def _send(api: httpx.AsyncClient, env: WorkflowEnvironment, event: dict[str, Any]) -> str:
    assert (await post_event(api, event)).status_code == 200
    result = await processed(env.client, event["id"])
    assert result.status == "processed", result
    return str(result.detail or "")


async def _state(
    api: httpx.AsyncClient, dbs: Databases, tenant: TenantWithKey, invoice_id: str
) -> tuple[str | None, str, list[str]]:
    """The invoice's dispute status, the tenant's access, and the notices queued."""
    invoice = (await api.get(f"/api/billing/invoices/{invoice_id}", headers=tenant.headers)).json()
    account = (await api.get("/api/billing/account", headers=tenant.headers)).json()
    async with dbs.admin.transaction() as conn:
        notices = [
            r[0]
            for r in await conn.execute(
                select(notification_deliveries.c.event_type)
                .where(
                    notification_deliveries.c.tenant_id == tenant.id,
                    notification_deliveries.c.event_type.like("invoice.dispute%"),
                )
                .order_by(notification_deliveries.c.created_at)
            )
        ]
    return invoice["dispute_status"], account["access_status"], notices


@pytest.mark.usefixtures("suspending")
async def test_a_dispute_suspends_the_tenant_while_open_and_closing_it_won_gives_access_back(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
) -> None:
    tenant, invoice, payment_intent = await _disputed_tenant(
        api, dbs, workflow_env, services, stripe_fake
    )
    opened = stripe_event("charge.dispute.created", _dispute(payment_intent, "needs_response"))
    assert await _send(api, workflow_env, opened) == "dispute open"
    await record(
        workflow_env.client.get_workflow_handle(f"stripe-event:{opened['id']}"),
        "stripe_event_dispute_opened",
    )
    assert await _state(api, dbs, tenant, invoice["id"]) == (
        "open", "suspended", ["invoice.disputed"],
    )  # fmt: skip
    check = await api.get(
        "/api/billing/usage/check", params={"metric": "llm_tokens"}, headers=tenant.headers
    )
    assert check.status_code == 402

    # The same facts again (Stripe re-sends, or an update that changes nothing): nothing moves.
    updated = stripe_event("charge.dispute.updated", _dispute(payment_intent, "under_review"))
    assert await _send(api, workflow_env, updated) == "dispute already open"

    closed = stripe_event("charge.dispute.closed", _dispute(payment_intent, "won"))
    assert await _send(api, workflow_env, closed) == "dispute won"
    assert await _state(api, dbs, tenant, invoice["id"]) == (
        "won", "active", ["invoice.disputed", "invoice.dispute_closed"],
    )  # fmt: skip

    async with dbs.admin.transaction() as conn:
        rows = (
            await conn.execute(
                select(audit_log.c.action, audit_log.c.actor, audit_log.c.details)
                .where(audit_log.c.tenant_id == tenant.id, audit_log.c.actor.like("stripe:%"))
                .order_by(audit_log.c.id)
            )
        ).all()
    assert [(r.action, r.actor) for r in rows] == [
        ("invoice.dispute_open", f"stripe:{opened['id']}"),
        ("tenant.suspended", f"stripe:{opened['id']}"),
        ("invoice.dispute_won", f"stripe:{closed['id']}"),
        ("tenant.reactivated", f"stripe:{closed['id']}"),
    ]
    assert rows[0].details["before"] == {"dispute_status": None, "dispute_id": None}
    assert rows[0].details["after"] == {"dispute_status": "open", "dispute_id": "dp_test_1"}


@pytest.mark.usefixtures("workers")
async def test_without_the_suspend_policy_a_lost_dispute_is_recorded_and_access_stays(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
) -> None:
    tenant, invoice, payment_intent = await _disputed_tenant(
        api, dbs, workflow_env, services, stripe_fake
    )
    opened = stripe_event("charge.dispute.created", _dispute(payment_intent, "needs_response"))
    await _send(api, workflow_env, opened)
    assert await _state(api, dbs, tenant, invoice["id"]) == ("open", "active", ["invoice.disputed"])
    lost = stripe_event("charge.dispute.closed", _dispute(payment_intent, "lost"))
    assert await _send(api, workflow_env, lost) == "dispute lost"
    assert await _state(api, dbs, tenant, invoice["id"]) == (
        "lost", "active", ["invoice.disputed", "invoice.dispute_closed"],
    )  # fmt: skip


@pytest.mark.usefixtures("workers")
async def test_a_dispute_of_a_payment_no_engine_invoice_made_is_ignored(
    api: httpx.AsyncClient, workflow_env: WorkflowEnvironment, services: Services
) -> None:
    accept_test_webhooks(services)
    event = stripe_event("charge.dispute.created", _dispute("pi_unknown", "needs_response"))
    assert (await post_event(api, event)).status_code == 200
    result = await processed(workflow_env.client, event["id"])
    assert result.status == "ignored", result
