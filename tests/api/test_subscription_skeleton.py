"""Walking skeleton end to end: POST writes the row and starts `subscription:{id}`; the workflow
ensures the Stripe customer (idempotency key from the tenant), records it, projects its status
and sets its search attributes; GET reads Postgres."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.stripe_fake import FakeStripeGateway
from tests.factories.tenants import make_tenant
from tests.harness import Databases


async def _wait_for_status(api: httpx.AsyncClient, headers: dict, status: str) -> dict:
    body: dict = {}
    for _ in range(200):
        body = (await api.get("/api/billing/subscription", headers=headers)).json()
        if body.get("status") == status:
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"subscription never reached {status}: {body}")


async def test_create_subscription_runs_the_workflow(
    api: httpx.AsyncClient,
    dbs: Databases,
    workers: list[Worker],
    workflow_env: WorkflowEnvironment,
    stripe_fake: FakeStripeGateway,
) -> None:
    tenant = await make_tenant(dbs)
    created = await api.post(
        "/api/billing/subscription",
        json={"plan_code": "free", "interval": "month"},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["workflow_id"] == f"subscription:{sub['id']}"
    assert sub["plan_code"] == "free"

    active = await _wait_for_status(api, tenant.headers, "active")
    assert active["current_period_start"] is not None
    assert active["current_period_end"] is not None

    customer_calls = [c for c in stripe_fake.calls if c.method == "ensure_customer"]
    assert {c.idempotency_key for c in customer_calls} == {f"customer:{tenant.id}"}

    handle = workflow_env.client.get_workflow_handle(sub["workflow_id"])
    from workflows import search_attributes as sa

    # Postgres steps are local activities (ADR 0025): the row says "active" while the workflow
    # task that upserts the search attributes is still completing, so wait for that task.
    for _ in range(100):
        attrs = (await handle.describe()).typed_search_attributes
        if attrs.get(sa.SUBSCRIPTION_STATUS) == "active":
            break
        await asyncio.sleep(0.05)

    assert attrs.get(sa.TENANT_ID) == str(tenant.id)
    assert attrs.get(sa.PLAN_CODE) == "free"
    assert attrs.get(sa.SUBSCRIPTION_STATUS) == "active"
    state = await handle.query("state")
    assert state["stripe_customer_id"]


async def test_second_subscription_is_a_conflict(
    api: httpx.AsyncClient, dbs: Databases, workers: list[Worker]
) -> None:
    tenant = await make_tenant(dbs)
    first = await api.post(
        "/api/billing/subscription", json={"plan_code": "free"}, headers=tenant.headers
    )
    assert first.status_code == 201
    await _wait_for_status(api, tenant.headers, "active")
    second = await api.post(
        "/api/billing/subscription", json={"plan_code": "standard"}, headers=tenant.headers
    )
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "conflict"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"plan_code": "platinum"}, 422),
        ({"plan_code": "free", "interval": "week"}, 422),
        ({"plan_code": "free", "surprise": 1}, 422),
        ({}, 422),
    ],
)
async def test_bad_subscription_requests(
    api: httpx.AsyncClient, dbs: Databases, body: dict, status: int
) -> None:
    tenant = await make_tenant(dbs)
    response = await api.post("/api/billing/subscription", json=body, headers=tenant.headers)
    assert response.status_code == status, response.text
    assert (await api.get("/api/billing/subscription", headers=tenant.headers)).status_code == 404
