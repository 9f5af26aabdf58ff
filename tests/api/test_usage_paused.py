"""While a subscription is paused, the period the pause closed is billed and none is open: usage
is refused (402 `subscription_paused`, nothing recorded) and the quota check says why."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from adapters.db.tables import usage_events
from tests.factories.subscriptions import make_subscription
from tests.factories.tenants import make_tenant
from tests.harness import Databases


async def test_usage_and_quota_checks_while_paused_are_402_subscription_paused(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    tenant = await make_tenant(dbs)
    await make_subscription(dbs, tenant.id, status="paused")
    event = {"metric": "api_calls", "quantity": 1, "idempotency_key": "while-paused"}

    single = await api.post("/api/billing/usage", json=event, headers=tenant.headers)
    batch = await api.post(
        "/api/billing/usage/batch", json={"events": [event]}, headers=tenant.headers
    )
    check = await api.get(
        "/api/billing/usage/check",
        params={"metric": "api_calls", "quantity": 1},
        headers=tenant.headers,
    )

    for response in (single, batch):
        assert response.status_code == 402, response.text
        assert response.json()["error"]["code"] == "subscription_paused"
    assert check.status_code == 402, check.text
    assert check.json()["reason"] == "subscription_paused"
    async with dbs.admin.transaction() as conn:
        assert await conn.scalar(select(func.count()).select_from(usage_events)) == 0


async def test_usage_without_a_timestamp_is_recorded_now(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    tenant = await make_tenant(dbs)
    await make_subscription(dbs, tenant.id)
    response = await api.post(
        "/api/billing/usage",
        json={"metric": "api_calls", "quantity": 2, "idempotency_key": "no-stamp"},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    async with dbs.admin.transaction() as conn:
        stored = (await conn.execute(select(usage_events.c.occurred_at))).scalar_one()
    assert stored is not None
