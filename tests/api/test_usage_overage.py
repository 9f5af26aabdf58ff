"""Overage for the renewal invoice: usage sent over HTTP, priced by the activity the
subscription workflow calls at period close, to the cent."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
from temporalio.testing import ActivityEnvironment

from activities.usage_store import UsageStore
from adapters.db.plans import latest_plan
from tests.factories.subscriptions import current_period, make_subscription
from tests.factories.tenants import make_tenant, operator_headers
from tests.harness import Databases
from workflows.subscription_io import PeriodOverageInput


async def test_overage_lines_match_the_usage_to_the_cent(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    tenant = await make_tenant(dbs)
    period = current_period()
    await make_subscription(dbs, tenant.id, plan_code="standard", period=period)
    now = datetime.now(UTC).isoformat()
    events = [
        ("llm_tokens", "600000"),
        ("llm_tokens", "650001"),  # 1,250,001 -> 250,001 over -> 251 blocks x 2c = 502c
        ("agent_executions", "5007"),  # 7 over x 5c = 35c
        ("storage_gb", "100.5"),  # gauge: peak 100.5 -> 101 billable -> 1 x 25c
        ("storage_gb", "60"),
        ("api_calls", "100000"),  # exactly included
        ("user_seats", "30"),  # hard cap: rejected at check time, never billed
    ]
    batch = [
        {"metric": m, "quantity": q, "timestamp": now, "idempotency_key": f"e{i}"}
        for i, (m, q) in enumerate(events)
    ]
    response = await api.post(
        "/api/billing/usage/batch", json={"events": batch}, headers=tenant.headers
    )
    assert response.json()["accepted"] == len(events)
    # an operator override on executions: 5,005 included -> 2 over x 5c = 10c
    await api.put(
        f"/api/billing/operator/tenants/{tenant.id}/quota-overrides/agent_executions",
        json={"included": 5005, "reason": "goodwill"},
        headers=await operator_headers(dbs),
    )

    async with dbs.worker.transaction() as conn:
        plan = await latest_plan(conn, "standard")
    assert plan is not None
    store = UsageStore(dbs.worker, ["storage_gb", "user_seats"])
    result = await ActivityEnvironment().run(
        store.compute_period_overage,
        PeriodOverageInput(str(tenant.id), period[0].isoformat(), plan.definition),
    )
    assert [(line.metric, line.units, line.amount) for line in result.lines] == [
        ("agent_executions", 2, 10),
        ("llm_tokens", 251, 502),
        ("storage_gb", 1, 25),
    ]
    assert result.total == 537
