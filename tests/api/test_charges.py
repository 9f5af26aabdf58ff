"""One-off charges (ADR 0022) on the real stack: a setup fee invoiced now is collected, once per
idempotency key; one whose card is declined goes to dunning and is recovered by a new card like
any invoice; one for the next invoice shows in the upcoming invoice and is billed on the
renewal, once."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from adapters.stripe_fake import FakeStripeGateway
from services.context import Services
from tests.api.test_billing_api import _active_standard, _until, pay_with_new_card
from tests.factories.tenants import TenantWithKey, operator_headers
from tests.harness import Databases
from tests.replay.recording import record


def _url(tenant: TenantWithKey) -> str:
    return f"/api/billing/operator/tenants/{tenant.id}/charges"


async def _one_off_lines(
    api: httpx.AsyncClient, tenant: TenantWithKey, invoice_id: str
) -> list[tuple[str, int]]:
    detail = (await api.get(f"/api/billing/invoices/{invoice_id}", headers=tenant.headers)).json()
    return [(i["description"], i["amount"]) for i in detail["items"] if i["kind"] == "one_off"]


async def declined_charge(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
) -> tuple[TenantWithKey, dict[str, str], str]:
    """A tenant whose one-off charge of 25,000 was declined: the invoice is open, in dunning."""
    tenant = await _active_standard(api, dbs, workflow_env, services)
    account = (await api.get("/api/billing/account", headers=tenant.headers)).json()
    stripe_fake.decline_next(account["stripe_customer_id"])
    op = await operator_headers(dbs)
    charge = await api.post(
        _url(tenant),
        json={"amount": 25000, "description": "Data migration services", "invoice": "now",
              "idempotency_key": "services-1"},
        headers=op,
    )  # fmt: skip
    assert charge.status_code == 201, charge.text
    await _until(api, tenant, lambda b: b["status"] == "past_due")
    return tenant, op, str(charge.json()["invoice_id"])


@pytest.mark.usefixtures("workers")
async def test_a_setup_fee_invoiced_now_is_collected_once(
    api: httpx.AsyncClient, dbs: Databases, workflow_env: WorkflowEnvironment, services: Services
) -> None:
    tenant = await _active_standard(api, dbs, workflow_env, services)
    op = await operator_headers(dbs)
    body = {"amount": 5000, "description": "Setup fee", "invoice": "now",
            "idempotency_key": "setup-1", "reason": "onboarding"}  # fmt: skip
    first = await api.post(_url(tenant), json=body, headers=op)
    assert first.status_code == 201, first.text
    charge: dict[str, Any] = first.json()
    assert (charge["invoiced"], charge["invoice_total"], charge["added"]) == ("now", 5000, True)
    invoice_id = charge["invoice_id"]
    paid = await _until(
        api, tenant,
        lambda b: any(i["id"] == invoice_id and i["status"] == "paid" for i in b["data"]),
        "/api/billing/invoices",
    )  # fmt: skip
    assert len(paid["data"]) == 2
    assert await _one_off_lines(api, tenant, invoice_id) == [("Setup fee", 5000)]

    again = await api.post(_url(tenant), json=body, headers=op)
    assert again.status_code == 201, again.text
    assert (again.json()["added"], again.json()["invoice_id"]) == (False, None)
    invoices = (await api.get("/api/billing/invoices", headers=tenant.headers)).json()["data"]
    assert len(invoices) == 2
    history = (await api.get("/api/billing/subscription/history", headers=tenant.headers)).json()
    added = [h for h in history if h["kind"] == "charge_added"]
    assert len(added) == 1


@pytest.mark.usefixtures("workers")
async def test_a_declined_charge_is_chased_by_dunning_and_paid_with_a_new_card(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
) -> None:
    tenant, _, invoice_id = await declined_charge(api, dbs, workflow_env, services, stripe_fake)
    await pay_with_new_card(api, services, workflow_env, tenant, invoice_id)
    detail = (await api.get(f"/api/billing/invoices/{invoice_id}", headers=tenant.headers)).json()
    assert detail["attempt_count"] >= 2  # declined once, then paid by dunning's retry


@pytest.mark.usefixtures("workers")
async def test_a_charge_for_the_next_invoice_is_billed_on_the_renewal(
    api: httpx.AsyncClient, dbs: Databases, workflow_env: WorkflowEnvironment, services: Services
) -> None:
    tenant = await _active_standard(api, dbs, workflow_env, services)
    op = await operator_headers(dbs)
    later = await api.post(
        _url(tenant),
        json={"amount": 12000, "description": "Onboarding services", "invoice": "next",
              "idempotency_key": "onboarding-1"},
        headers=op,
    )  # fmt: skip
    assert later.status_code == 201, later.text
    assert (later.json()["invoiced"], later.json()["invoice_id"]) == ("next_invoice", None)
    upcoming = (await api.get("/api/billing/invoices/upcoming", headers=tenant.headers)).json()
    lines = [(x["description"], x["amount"]) for x in upcoming["next_invoice_lines"]]
    assert ("Onboarding services", 12000) in lines
    assert upcoming["next_invoice_total"] == 4900 + 12000

    await workflow_env.sleep(timedelta(days=31))
    invoices = await _until(
        api, tenant, lambda b: len(b["data"]) == 2 and b["data"][0]["status"] == "paid",
        "/api/billing/invoices",
    )  # fmt: skip
    renewal = invoices["data"][0]
    assert renewal["total"] == 4900 + 12000
    live = (await api.get("/api/billing/subscription", headers=tenant.headers)).json()
    await record(
        workflow_env.client.get_workflow_handle(live["workflow_id"]), "subscription_one_off_charge"
    )
    assert await _one_off_lines(api, tenant, renewal["id"]) == [("Onboarding services", 12000)]


@pytest.mark.usefixtures("workers")
async def test_charges_are_refused_without_a_billing_subscription(
    api: httpx.AsyncClient, dbs: Databases, workflow_env: WorkflowEnvironment, services: Services
) -> None:
    tenant = await _active_standard(api, dbs, workflow_env, services)
    op = await operator_headers(dbs)
    body = {"amount": 100, "description": "x", "idempotency_key": "k"}
    assert (await api.post(_url(tenant), json=body, headers=tenant.headers)).status_code == 403
    for bad in ({**body, "amount": 0}, {**body, "amount": 1.5}, {**body, "invoice": "later"}):
        assert (await api.post(_url(tenant), json=bad, headers=op)).status_code == 422, bad
    paused = await api.post("/api/billing/subscription/pause", json={}, headers=tenant.headers)
    assert paused.status_code == 200, paused.text
    refused = await api.post(_url(tenant), json=body, headers=op)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "invalid_transition"


@pytest.mark.usefixtures("workers")
async def test_tenants_add_charges_only_when_the_catalog_allows_it(
    api: httpx.AsyncClient, dbs: Databases, workflow_env: WorkflowEnvironment, services: Services
) -> None:
    tenant = await _active_standard(api, dbs, workflow_env, services)
    body = {"amount": 1500, "description": "Extra workspace", "invoice": "next",
            "idempotency_key": "addon-1"}  # fmt: skip
    url = "/api/billing/subscription/charges"
    refused = await api.post(url, json=body, headers=tenant.headers)
    assert refused.status_code == 403, refused.text
    assert "tenant_charges" in refused.json()["error"]["message"]

    services.catalog = dataclasses.replace(services.catalog, tenant_charges=True)
    added = await api.post(url, json=body, headers=tenant.headers)
    assert added.status_code == 201, added.text
    assert (added.json()["key"], added.json()["added"]) == ("tenant:addon-1", True)
    again = await api.post(url, json=body, headers=tenant.headers)
    assert (again.status_code, again.json()["added"]) == (201, False)
    # The operators' keys are apart: the same key from an operator is a charge of its own.
    op = await operator_headers(dbs)
    operator = await api.post(_url(tenant), json=body, headers=op)
    assert (operator.status_code, operator.json()["added"]) == (201, True)
    upcoming = (await api.get("/api/billing/invoices/upcoming", headers=tenant.headers)).json()
    lines = [(x["description"], x["amount"]) for x in upcoming["next_invoice_lines"]]
    assert lines.count(("Extra workspace", 1500)) == 2
    read_only = await api.post(
        f"/api/billing/operator/tenants/{tenant.id}/api-keys",
        json={"name": "reader", "scopes": ["billing.read"]}, headers=op,
    )  # fmt: skip
    reader = {"Authorization": f"Bearer {read_only.json()['key']}"}
    assert (await api.post(url, json=body, headers=reader)).status_code == 403
