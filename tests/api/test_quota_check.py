"""The quota check: hard caps (402 + headers), suspended tenants, overrides, fail-closed."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from adapters.db.session import Database
from api.app import create_app
from services.context import Services
from tests.factories.subscriptions import current_period, make_subscription, set_access_status
from tests.factories.tenants import TenantWithKey, make_tenant, operator_headers
from tests.harness import Databases, free_port

CHECK = "/api/billing/usage/check"


async def use(api: httpx.AsyncClient, tenant: TenantWithKey, metric: str, quantity: int) -> None:
    response = await api.post(
        "/api/billing/usage",
        json={
            "metric": metric,
            "quantity": quantity,
            "timestamp": datetime.now(UTC).isoformat(),
            "idempotency_key": f"{metric}-{quantity}-{datetime.now(UTC).timestamp()}",
        },
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text


@pytest.fixture
async def free_tenant(dbs: Databases) -> TenantWithKey:
    tenant = await make_tenant(dbs)
    await make_subscription(dbs, tenant.id, plan_code="free")
    return tenant


async def test_hard_cap_answers_402_with_quota_headers(
    api: httpx.AsyncClient, free_tenant: TenantWithKey
) -> None:
    period = current_period()
    await use(api, free_tenant, "agent_executions", 95)  # free: 100, hard
    ok = await api.get(
        CHECK, params={"metric": "agent_executions", "quantity": 5}, headers=free_tenant.headers
    )
    assert ok.status_code == 200
    assert ok.json()["allowed"] is True
    assert ok.headers["X-Quota-Remaining"] == "5"

    blocked = await api.get(
        CHECK, params={"metric": "agent_executions", "quantity": 6}, headers=free_tenant.headers
    )
    assert blocked.status_code == 402
    assert blocked.json()["reason"] == "hard_cap_reached"
    assert blocked.headers["X-Quota-Limit"] == "100"
    assert blocked.headers["X-Quota-Used"] == "95"
    assert blocked.headers["X-Quota-Remaining"] == "5"
    reset = datetime.fromisoformat(blocked.headers["X-Quota-Reset"].replace("Z", "+00:00"))
    assert abs((reset - period[1]).total_seconds()) < 5


async def test_unlimited_metric_is_always_allowed(api: httpx.AsyncClient, dbs: Databases) -> None:
    tenant = await make_tenant(dbs)
    await make_subscription(dbs, tenant.id, plan_code="enterprise")
    response = await api.get(
        CHECK, params={"metric": "user_seats", "quantity": 10**6}, headers=tenant.headers
    )
    assert response.status_code == 200
    assert response.headers["X-Quota-Limit"] == "unlimited"


async def test_suspended_tenant_is_blocked_for_payment_overdue(
    api: httpx.AsyncClient, dbs: Databases, free_tenant: TenantWithKey
) -> None:
    await set_access_status(dbs, free_tenant.id, "suspended")
    response = await api.get(CHECK, params={"metric": "api_calls"}, headers=free_tenant.headers)
    assert response.status_code == 402
    assert response.json()["reason"] == "payment_overdue"


async def test_unknown_metric_is_a_422_naming_it(
    api: httpx.AsyncClient, free_tenant: TenantWithKey
) -> None:
    response = await api.get(CHECK, params={"metric": "gpu"}, headers=free_tenant.headers)
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "metric"


async def test_operator_override_raises_a_hard_cap_and_is_audited(
    api: httpx.AsyncClient, dbs: Databases, free_tenant: TenantWithKey
) -> None:
    await use(api, free_tenant, "agent_executions", 100)
    params = {"metric": "agent_executions", "quantity": 1}
    assert (await api.get(CHECK, params=params, headers=free_tenant.headers)).status_code == 402
    operator = await operator_headers(dbs)
    put = await api.put(
        f"/api/billing/operator/tenants/{free_tenant.id}/quota-overrides/agent_executions",
        json={"included": 500, "reason": "pilot customer"},
        headers=operator,
    )
    assert put.status_code == 200, put.text
    allowed = await api.get(CHECK, params=params, headers=free_tenant.headers)
    assert allowed.status_code == 200
    assert allowed.headers["X-Quota-Limit"] == "500"
    quotas = (await api.get("/api/billing/usage/quotas", headers=free_tenant.headers)).json()
    assert {q["metric"]: q["overridden"] for q in quotas}["agent_executions"] is True

    from sqlalchemy import text

    async with dbs.admin.transaction() as conn:
        actions = (
            await conn.execute(
                text("SELECT action FROM audit_log WHERE tenant_id = :t"), {"t": free_tenant.id}
            )
        ).scalars()
        assert "quota_override.set" in list(actions)

    removed = await api.delete(
        f"/api/billing/operator/tenants/{free_tenant.id}/quota-overrides/agent_executions",
        headers=operator,
    )
    assert removed.status_code == 204
    assert (await api.get(CHECK, params=params, headers=free_tenant.headers)).status_code == 402


async def test_fails_closed_when_the_database_is_unreachable(
    services: Services, free_tenant: TenantWithKey, dbs: Databases
) -> None:
    dead = Database(f"postgresql+asyncpg://billing_app@127.0.0.1:{free_port()}/nowhere")
    broken = Services(
        settings=services.settings,
        tenant_db=dead,
        system_db=services.system_db,  # keys still resolve: only the quota read fails
        temporal=services.temporal,
        stripe=services.stripe,
        catalog=services.catalog,
    )
    app = create_app(broken.settings, services=broken)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get(
            CHECK, params={"metric": "api_calls"}, headers=free_tenant.headers
        )
    await dead.dispose()
    assert response.status_code == 503
    assert response.json()["allowed"] is False
    assert response.json()["reason"] == "quota_unavailable"


async def test_usage_summary_and_daily_series(
    api: httpx.AsyncClient, free_tenant: TenantWithKey
) -> None:
    await use(api, free_tenant, "api_calls", 250)
    summary = (await api.get("/api/billing/usage", headers=free_tenant.headers)).json()
    calls = {m["metric"]: m for m in summary["metrics"]}["api_calls"]
    assert (calls["used"], calls["limit"], calls["percent"], calls["remaining"]) == (
        "250",
        1000,
        25.0,
        "750",
    )
    series = (await api.get("/api/billing/usage/api_calls", headers=free_tenant.headers)).json()
    assert series["used"] == "250"
    assert [d["quantity"] for d in series["days"]] == ["250"]


async def test_csv_export_streams_raw_events(
    api: httpx.AsyncClient, free_tenant: TenantWithKey
) -> None:
    await use(api, free_tenant, "api_calls", 7)
    await use(api, free_tenant, "llm_tokens", 9)
    today = datetime.now(UTC).date().isoformat()
    response = await api.get(
        "/api/billing/usage/export.csv",
        params={"start": today, "end": today},
        headers=free_tenant.headers,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.strip().splitlines()
    assert lines[0].startswith("occurred_at,metric,quantity")
    assert sorted(line.split(",")[1] for line in lines[1:]) == ["api_calls", "llm_tokens"]


async def test_quota_read_sets_the_tenant_for_its_own_statement_only(
    dbs: Databases, free_tenant: TenantWithKey
) -> None:
    from adapters.db import usage as usage_repo

    other = await make_tenant(dbs)
    pool = await dbs.app.raw_pool()
    async with pool.acquire() as connection:
        row = await usage_repo.quota_row(connection, free_tenant.id, "api_calls")
        assert row is not None
        assert row.access_status == "active"
        setting = await connection.fetchval("SELECT current_setting('app.tenant_id', true)")
        assert setting in ("", None)
        # RLS still applies: the function runs as the app role, for the tenant it was given
        assert await connection.fetchval("SELECT count(*) FROM tenants") == 0
        assert (await usage_repo.quota_row(connection, other.id, "api_calls")) is not None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "metric"),
        ({"metric": "api_calls", "quantity": "-1"}, "quantity"),
        ({"metric": "api_calls", "quantity": "NaN"}, "quantity"),
        ({"metric": "api_calls", "quantity": "lots"}, "quantity"),
    ],
)
async def test_bad_check_parameters_are_422_naming_them(
    api: httpx.AsyncClient, free_tenant: TenantWithKey, params: dict[str, str], field: str
) -> None:
    response = await api.get(CHECK, params=params, headers=free_tenant.headers)
    assert response.status_code == 422
    fields = response.json()["error"]["fields"]
    assert [(f["field"], f["location"]) for f in fields] == [(field, "query")]


async def test_check_needs_a_read_key(api: httpx.AsyncClient, dbs: Databases) -> None:
    assert (await api.get(CHECK, params={"metric": "api_calls"})).status_code == 401
    bad = {"Authorization": "Bearer bk_nope"}
    assert (await api.get(CHECK, params={"metric": "api_calls"}, headers=bad)).status_code == 401
    operator = await operator_headers(dbs)
    response = await api.get(CHECK, params={"metric": "api_calls"}, headers=operator)
    assert response.status_code == 403
