"""The demo clock (`--time-scale`) is a full demo: usage stamped with the caller's wall clock, or
sent without a timestamp, lands in the open business period, and the renewal invoice bills it
as overage, to the cent. A month of business time is 259 s of wall time at 10,000x; the
time-skipping server skips it."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from config import Settings
from services.context import Services
from tests.api.test_billing_api import _until, align_clock, subscribe_with_card
from tests.harness import Databases

SCALE = 10_000.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The `services` and `api` fixtures build on this one.
    return settings.model_copy(update={"time_scale": SCALE})


def _wall(business: timedelta) -> timedelta:
    return business / SCALE


@pytest.mark.usefixtures("workers")
async def test_usage_on_the_demo_clock_is_billed_on_the_renewal_invoice(
    api: httpx.AsyncClient, dbs: Databases, workflow_env: WorkflowEnvironment, services: Services
) -> None:
    tenant = await subscribe_with_card(api, dbs)
    await workflow_env.sleep(_wall(timedelta(days=14, hours=12)))  # the 14-day trial converts
    active = await _until(api, tenant, lambda b: b["status"] == "active")
    await align_clock(services, workflow_env)

    # 1,235,000 tokens on Standard (1,000,000 included): 235 blocks of 1,000 over, at 2 cents.
    stamped = await api.post(
        "/api/billing/usage",
        json={
            "metric": "llm_tokens",
            "quantity": 1_000_000,
            "timestamp": services.clock().isoformat(),  # the caller's wall clock
            "idempotency_key": "demo-1",
        },
        headers=tenant.headers,
    )
    assert stamped.status_code == 201, stamped.text
    unstamped = await api.post(
        "/api/billing/usage",
        json={"metric": "llm_tokens", "quantity": 235_000, "idempotency_key": "demo-2"},
        headers=tenant.headers,
    )
    assert unstamped.status_code == 201, unstamped.text
    used = await api.get("/api/billing/usage", headers=tenant.headers)
    assert used.status_code == 200, used.text
    llm = next(m for m in used.json()["metrics"] if m["metric"] == "llm_tokens")
    assert llm["used"] == "1235000", llm
    check = await api.get(
        "/api/billing/usage/check",
        params={"metric": "llm_tokens", "quantity": 1},
        headers=tenant.headers,
    )
    assert check.headers["x-quota-used"] == "1235000"

    await workflow_env.sleep(_wall(timedelta(days=31)))  # past the renewal
    renewed = await _until(
        api, tenant, lambda b: b["current_period_start"] == active["current_period_end"]
    )
    assert renewed["status"] == "active"
    invoices = (await api.get("/api/billing/invoices", headers=tenant.headers)).json()["data"]
    # The renewal bills the next period in advance and the closed period's overage with it.
    renewal = next(
        i for i in invoices if i["period_start"] == active["current_period_end"]
        and i["billing_reason"] == "subscription_cycle"
    )  # fmt: skip
    detail = (
        await api.get(f"/api/billing/invoices/{renewal['id']}", headers=tenant.headers)
    ).json()
    overage = [item for item in detail["items"] if item["kind"] == "overage"]
    assert [(item["metric"], item["amount"]) for item in overage] == [("llm_tokens", 470)]
    assert overage[0]["period_start"] == active["current_period_start"]
    base = [item for item in detail["items"] if item["kind"] != "overage"]
    assert detail["total"] == sum(item["amount"] for item in base) + 470
