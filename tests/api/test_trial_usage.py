"""During a trial the trial is the open billing period: usage is recorded and quotas apply."""

from __future__ import annotations

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from services.context import Services
from tests.api.test_billing_api import SUB, _until, align_clock
from tests.factories.tenants import make_tenant
from tests.harness import Databases


@pytest.mark.usefixtures("workers")
async def test_usage_is_metered_during_the_trial(
    api: httpx.AsyncClient, dbs: Databases, workflow_env: WorkflowEnvironment, services: Services
) -> None:
    tenant = await make_tenant(dbs)
    created = await api.post(SUB, json={"plan_code": "standard"}, headers=tenant.headers)
    assert created.status_code == 201, created.text
    trialing = await _until(api, tenant, lambda b: b["status"] == "trialing")
    assert trialing["current_period_end"] == trialing["trial_end"]
    assert trialing["current_period_start"] is not None
    await align_clock(services, workflow_env)

    now = services.clock()
    event = {
        "metric": "llm_tokens",
        "quantity": 1500,
        "timestamp": now.isoformat(),
        "idempotency_key": "trial-1",
    }
    recorded = await api.post("/api/billing/usage", json=event, headers=tenant.headers)
    assert recorded.status_code == 201, recorded.text

    check = await api.get(
        "/api/billing/usage/check",
        params={"metric": "llm_tokens", "quantity": 1000},
        headers=tenant.headers,
    )
    assert check.status_code == 200, check.text
    assert check.headers["x-quota-used"] == "1500"
    assert check.headers["x-quota-limit"] == "1000000"
