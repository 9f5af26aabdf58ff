"""Reconciliation: random workloads through the ingestion path leave zero drift between the
aggregates and the raw events; injected drift is found and repaired (workflow and endpoint)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from config import Settings
from tests.factories.subscriptions import make_subscription
from tests.factories.tenants import make_tenant, operator_headers
from tests.harness import Databases
from workflows.reconcile import ReconcileUsageWorkflow
from workflows.reconcile_io import ReconcileInput, ReconcileResult

GAUGES = {"storage_gb", "user_seats"}

events_strategy = st.lists(
    st.tuples(
        st.integers(0, 25),  # key: a small pool, so duplicates are common
        st.sampled_from(["llm_tokens", "api_calls", "storage_gb"]),
        st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False),
        st.integers(0, 4 * 24),  # hours ago: late events across several days of the period
    ),
    min_size=1,
    max_size=60,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(workload=events_strategy, batch_size=st.integers(1, 25))
async def test_random_workloads_leave_zero_drift(
    api: httpx.AsyncClient, dbs: Databases, workload: list[Any], batch_size: int
) -> None:
    tenant = await make_tenant(dbs)
    await make_subscription(dbs, tenant.id)
    now = datetime.now(UTC)
    events = [
        {
            "metric": metric,
            "quantity": str(quantity),
            "timestamp": (now - timedelta(hours=hours)).isoformat(),
            "idempotency_key": f"k{key}",
        }
        for key, metric, quantity, hours in workload
    ]
    for i in range(0, len(events), batch_size):
        response = await api.post(
            "/api/billing/usage/batch",
            json={"events": events[i : i + batch_size]},
            headers=tenant.headers,
        )
        assert response.status_code == 200, response.text

    # Model: the first event of each key counts; sums for counters, max for gauges.
    first: dict[str, dict[str, Any]] = {}
    for e in events:
        first.setdefault(e["idempotency_key"], e)
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for e in first.values():
        q = Decimal(e["quantity"])
        m = e["metric"]
        expected[m] = max(expected[m], q) if m in GAUGES else expected[m] + q
    async with dbs.admin.transaction() as conn:
        counters = dict(
            (
                await conn.execute(
                    text("SELECT metric, quantity FROM usage_period_counters WHERE tenant_id = :t"),
                    {"t": tenant.id},
                )
            ).all()
        )
    assert counters == dict(expected)

    today = now.date()
    response = await api.post(
        "/api/billing/operator/usage/reconcile",
        json={
            "first": (today - timedelta(days=6)).isoformat(),
            "last": today.isoformat(),
            "repair": False,
        },
        headers=await operator_headers(dbs),
    )
    assert response.status_code == 200, response.text
    assert response.json()["drift"] == []


async def _tamper(dbs: Databases, tenant_id: object) -> None:
    async with dbs.admin.transaction() as conn:
        await conn.execute(
            text("UPDATE usage_daily_totals SET quantity = quantity + 1 WHERE tenant_id = :t"),
            {"t": tenant_id},
        )
        await conn.execute(
            text("UPDATE usage_period_counters SET quantity = 0 WHERE tenant_id = :t"),
            {"t": tenant_id},
        )


async def test_reconcile_workflow_finds_and_repairs_drift(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    workers: list[Worker],
    settings: Settings,
) -> None:
    tenant = await make_tenant(dbs)
    await make_subscription(dbs, tenant.id)
    now = datetime.now(UTC)
    batch = [
        {
            "metric": "api_calls",
            "quantity": 5,
            "timestamp": now.isoformat(),
            "idempotency_key": "a",
        },
        {
            "metric": "api_calls",
            "quantity": 7,
            "timestamp": (now - timedelta(days=1)).isoformat(),
            "idempotency_key": "b",
        },
    ]
    await api.post("/api/billing/usage/batch", json={"events": batch}, headers=tenant.headers)
    await _tamper(dbs, tenant.id)

    day = now.date()
    run = ReconcileInput(first=(day - timedelta(days=2)).isoformat(), last=day.isoformat())
    result: ReconcileResult = await workflow_env.client.execute_workflow(
        ReconcileUsageWorkflow.run,
        run,
        id=f"reconcile-test-{tenant.id}",
        task_queue=settings.task_queue,
    )
    assert result.drift_found == 3  # two daily rows and the period counter
    assert result.repaired == 3
    again: ReconcileResult = await workflow_env.client.execute_workflow(
        ReconcileUsageWorkflow.run,
        ReconcileInput(first=run.first, last=run.last, repair=False),
        id=f"reconcile-test-{tenant.id}-2",
        task_queue=settings.task_queue,
    )
    assert again.drift_found == 0
    summary = (await api.get("/api/billing/usage", headers=tenant.headers)).json()
    assert {m["metric"]: m["used"] for m in summary["metrics"]}["api_calls"] == "12"


async def test_cli_backfill_repairs_a_past_range(
    api: httpx.AsyncClient, dbs: Databases, settings: Settings, capsys: Any
) -> None:
    from cli.reconcile import reconcile_usage as reconcile_usage_cli

    tenant = await make_tenant(dbs)
    await make_subscription(dbs, tenant.id)
    now = datetime.now(UTC)
    await api.post(
        "/api/billing/usage",
        json={
            "metric": "api_calls",
            "quantity": 3,
            "timestamp": now.isoformat(),
            "idempotency_key": "a",
        },
        headers=tenant.headers,
    )
    await _tamper(dbs, tenant.id)
    day = now.date()
    first = day - timedelta(days=1)
    assert await asyncio.to_thread(reconcile_usage_cli, settings, first, day, repair=False) == 1
    assert await asyncio.to_thread(reconcile_usage_cli, settings, first, day, repair=True) == 1
    assert await asyncio.to_thread(reconcile_usage_cli, settings, first, day, repair=True) == 0
    assert "0 drifted aggregates repaired" in capsys.readouterr().out
