"""A tenant's erasure (ADR 0018) on the real stack: it cancels the subscription, deletes the
Stripe customer, revokes access and replaces personal data with tombstones; afterwards no text
column of any table holds the tenant's name, email or address, every invoice keeps its amount
and number, a second erase changes nothing, and a Stripe failure half way is resumed."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select, text, update

from adapters.db.tables import (
    api_keys,
    audit_log,
    credit_notes,
    invoices,
    subscriptions,
    tenants,
    usage_events,
    webhook_events,
)
from adapters.stripe_fake import FakeStripeGateway
from services.context import Services
from tests.api.test_billing_api import SUB, _until
from tests.factories.tenants import TenantWithKey, operator_headers
from tests.harness import Databases
from tests.replay.recording import record

NAME = "Zebulon Quartermaine"
EMAIL = "zebulon.quartermaine@example.com"
ADDRESS = "42 Wallaby Way, Sydney"


async def _tenant(api: httpx.AsyncClient, dbs: Databases) -> TenantWithKey:
    """Made the way an operator makes one (audited with its name), with personal data in the
    places it naturally lands."""
    op = await operator_headers(dbs)
    made = await api.post(
        "/api/billing/operator/tenants", json={"name": NAME, "email": EMAIL}, headers=op
    )
    assert made.status_code == 201, made.text
    tenant_id = UUID(made.json()["id"])
    key = await api.post(
        f"/api/billing/operator/tenants/{tenant_id}/api-keys",
        json={"name": f"{NAME}'s backend", "scopes": ["billing.read", "billing.manage"]},
        headers=op,
    )
    tenant = TenantWithKey(tenant_id, NAME, key.json()["key"])
    async with dbs.admin.transaction() as conn:
        await conn.execute(
            update(tenants).where(tenants.c.id == tenant_id).values(metadata={"address": ADDRESS})
        )
    created = await api.post(
        SUB, json={"plan_code": "standard", "payment_method_id": "pm_card_visa"},
        headers=tenant.headers,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    await _until(api, tenant, lambda b: b["status"] in ("trialing", "active"))
    details = await api.put(
        "/api/billing/account/billing-details",
        json={"name": NAME, "address": [ADDRESS], "email": EMAIL},
        headers=tenant.headers,
    )
    assert details.status_code == 200, details.text
    usage = await api.post(
        "/api/billing/usage",
        json={"metric": "api_calls", "quantity": 1, "idempotency_key": "u-1",
              "metadata": {"customer": NAME, "ship_to": ADDRESS}},
        headers=tenant.headers,
    )  # fmt: skip
    assert usage.status_code in (200, 201), usage.text
    endpoint = await api.post(
        "/api/billing/notification-endpoints",
        json={"url": "https://hooks.example.test/zebulon-quartermaine"},
        headers=tenant.headers,
    )
    assert endpoint.status_code == 201, endpoint.text
    async with dbs.admin.transaction() as conn:
        customer = await conn.scalar(
            select(tenants.c.stripe_customer_id).where(tenants.c.id == tenant_id)
        )
        await conn.execute(
            webhook_events.insert().values(
                stripe_event_id="evt_pii_1", type="customer.updated", tenant_id=tenant_id,
                status="ignored",
                payload={"data": {"object": {"id": customer, "name": NAME, "email": EMAIL,
                                             "address": {"line1": ADDRESS}}}},
            )
        )  # fmt: skip
        # An operator's credit note whose reason names the person (ADR 0020).
        subscription_id = await conn.scalar(
            select(subscriptions.c.id).where(subscriptions.c.tenant_id == tenant_id)
        )
        invoice_id = await conn.scalar(
            invoices.insert()
            .values(
                tenant_id=tenant_id, subscription_id=subscription_id, status="paid",
                billing_reason="manual", billing_key=f"erasure-test:{tenant_id}",
                currency="usd", subtotal=4900, total=4900, amount_due=4900, amount_paid=4900,
                number=f"INV-TEST-{str(tenant_id)[:8]}",
            )
            .returning(invoices.c.id)
        )  # fmt: skip
        await conn.execute(
            credit_notes.insert().values(
                tenant_id=tenant_id, invoice_id=invoice_id, number=f"CN-TEST-{str(tenant_id)[:8]}",
                amount=1000, currency="usd", reason=f"goodwill for {NAME}, {ADDRESS}",
                source="operator", idempotency_key="erasure-test", refund_status="succeeded",
                actor="api_key:test",
            )
        )  # fmt: skip
    return tenant


async def _personal_data_left(dbs: Databases) -> list[tuple[str, str, str]]:
    """(table, column, term) for every text-like column of every table holding a term."""
    found = []
    async with dbs.admin.transaction() as conn:
        columns = (
            await conn.execute(
                text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND table_name <> 'alembic_version' "
                    "AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'ARRAY')"
                )
            )
        ).all()
        for table, column in columns:
            for term in (NAME, EMAIL, ADDRESS, "Quartermaine", "Wallaby"):
                hits = await conn.scalar(
                    text(f'SELECT count(*) FROM "{table}" WHERE "{column}"::text ILIKE :p'),
                    {"p": f"%{term}%"},
                )
                if hits:
                    found.append((table, column, term))
    return found


async def _books(dbs: Databases, tenant_id: UUID) -> list[Any]:
    """The tenant's invoices as the books see them: id, total, number, amount paid."""
    async with dbs.admin.transaction() as conn:
        rows = await conn.execute(
            select(invoices.c.id, invoices.c.total, invoices.c.number, invoices.c.amount_paid)
            .where(invoices.c.tenant_id == tenant_id)
        )  # fmt: skip
        return sorted(rows.all())


async def _erased(api: httpx.AsyncClient, url: str, op: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(400):
        body = (await api.get(url, headers=op)).json()
        if body.get("status") == "completed":
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"the erasure never completed: {body}")


@pytest.mark.usefixtures("workers")
async def test_erasure_leaves_no_personal_data_and_keeps_the_books(
    api: httpx.AsyncClient, dbs: Databases, stripe_fake: FakeStripeGateway, services: Services
) -> None:
    tenant = await _tenant(api, dbs)
    assert await _personal_data_left(dbs), "the seed put personal data in the database"
    account = (await api.get("/api/billing/account", headers=tenant.headers)).json()
    customer_id = account["stripe_customer_id"]
    books = await _books(dbs, tenant.id)
    # Stripe fails once on the way: the workflow retries the step and goes on.
    stripe_fake.fail_next("delete_customer")

    op = await operator_headers(dbs)
    url = f"/api/billing/operator/tenants/{tenant.id}/erase"
    started = await api.post(url, json={"reason": "GDPR art. 17 request"}, headers=op)
    assert started.status_code == 202, started.text
    assert started.json()["started_now"] is True
    done = await _erased(api, url, op)
    assert [s["step"] for s in done["steps"]] == ["cancel", "stripe", "revoke", "tombstone"]

    assert await _personal_data_left(dbs) == []
    assert customer_id not in {c.id for c in stripe_fake.customers}
    card = account["default_payment_method"]["stripe_payment_method_id"]
    assert stripe_fake.payment_method_customer(card) is None
    # Deterministic keys: the step retried after the scripted failure reused them.
    assert stripe_fake.keys_for("delete_customer") == [f"delete-customer:{customer_id}"] * 2
    assert stripe_fake.keys_for("detach_payment_method") == [f"detach:{card}"] * 2
    after = await _books(dbs, tenant.id)
    async with dbs.admin.transaction() as conn:
        erased = (
            await conn.execute(
                select(audit_log.c.actor, audit_log.c.details).where(
                    audit_log.c.tenant_id == tenant.id, audit_log.c.action == "tenant.erased"
                )
            )
        ).all()
        events = await conn.scalar(
            select(usage_events.c.quantity).where(usage_events.c.tenant_id == tenant.id)
        )
    # The books stay: every invoice present before (the final one added) keeps its figures.
    assert set(books) <= set(after)
    assert events == 1
    assert len(erased) == 1
    assert erased[0].actor == f"system:erase:{tenant.id}"
    assert erased[0].details["reason"] == "GDPR art. 17 request"
    # Access is gone (an API process that verified the key recently accepts it for at most
    # BILLING_API_KEY_CACHE_SECONDS more, as after any revocation: ADR 0003).
    async with dbs.admin.transaction() as conn:
        live_keys = await conn.scalar(
            select(text("count(*)"))
            .select_from(api_keys)
            .where(api_keys.c.tenant_id == tenant.id, api_keys.c.revoked_at.is_(None))
        )
    assert live_keys == 0
    services.extras.pop("api_key_cache", None)
    assert (await api.get("/api/billing/account", headers=tenant.headers)).status_code == 401
    assert (await api.get(SUB, headers=tenant.headers)).status_code == 401

    await record(services.temporal.get_workflow_handle(f"erase:{tenant.id}"), "tenant_erased")
    # A second erase is a no-op.
    again = await api.post(url, json={}, headers=op)
    assert again.status_code == 202
    assert again.json()["started_now"] is False
    async with dbs.admin.transaction() as conn:
        count = await conn.scalar(
            select(text("count(*)"))
            .select_from(audit_log)
            .where(audit_log.c.tenant_id == tenant.id, audit_log.c.action == "tenant.erased")
        )
    assert count == 1


async def test_erasing_an_unknown_tenant_is_404(api: httpx.AsyncClient, dbs: Databases) -> None:
    op = await operator_headers(dbs)
    missing = await api.post(
        "/api/billing/operator/tenants/00000000-0000-0000-0000-000000000000/erase",
        json={},
        headers=op,
    )
    assert missing.status_code == 404
