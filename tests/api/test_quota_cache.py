"""The quota check's cache in the running app: coherent with writes from any process, with this
process's own writes at once, and out of the way whenever its listening connection is down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx
import pytest
from sqlalchemy import text

from adapters.db.quota_cache import QuotaChangeListener, QuotaRowCache
from api.app import create_app
from services.context import Services
from tests.factories.subscriptions import make_subscription, set_access_status
from tests.factories.tenants import TenantWithKey, make_tenant, operator_headers
from tests.harness import Databases

CHECK = "/api/billing/usage/check"
WAIT_SECONDS = 15.0  # an upper bound for a local notification, not a speed expectation


@dataclass
class CachedApi:
    client: httpx.AsyncClient
    services: Services
    listener: QuotaChangeListener

    @property
    def cache(self) -> QuotaRowCache:
        return self.services.quota_cache


async def eventually(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not condition():
        if loop.time() > deadline:
            pytest.fail(f"not within {WAIT_SECONDS:g}s: {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
async def cached(services: Services) -> AsyncIterator[CachedApi]:
    """The app with its lifespan running (which starts the listener), as `billing api` runs."""
    settings = services.settings.model_copy(update={"quota_cache_seconds": 60.0})
    own = replace(services, settings=settings, extras={})
    app = create_app(settings, services=own)
    async with app.router.lifespan_context(app):
        listener = own.extras["quota_listener"]
        assert isinstance(listener, QuotaChangeListener)
        await asyncio.wait_for(listener.connected.wait(), WAIT_SECONDS)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield CachedApi(client, own, listener)


@pytest.fixture
async def tenant(dbs: Databases) -> TenantWithKey:
    tenant = await make_tenant(dbs)
    await make_subscription(dbs, tenant.id, plan_code="free")  # agent_executions: 100, hard
    return tenant


async def check(api: CachedApi, tenant: TenantWithKey, quantity: int = 1) -> httpx.Response:
    return await api.client.get(
        CHECK, params={"metric": "agent_executions", "quantity": quantity}, headers=tenant.headers
    )


async def admin_sql(dbs: Databases, sql: str, **params: object) -> None:
    """A write made outside this API process (another replica, the worker, psql); `sql` may be
    several statements separated by `;`, run in one transaction."""
    async with dbs.admin.transaction() as conn:
        for statement in sql.split(";"):
            names = {k: v for k, v in params.items() if f":{k}" in statement}
            await conn.execute(text(statement), names)


async def fill_then_change(
    api: CachedApi, dbs: Databases, tenant: TenantWithKey, sql: str, **params: object
) -> None:
    first = await check(api, tenant)
    assert first.status_code == 200, first.text
    assert api.cache.get(tenant.id, "agent_executions", datetime.now(UTC)) is not None
    seen = api.cache.invalidations
    await admin_sql(dbs, sql, **params)
    await eventually(lambda: api.cache.invalidations > seen, "the change notification")


async def test_a_check_fills_the_cache_and_the_next_is_answered_from_it(
    cached: CachedApi, tenant: TenantWithKey
) -> None:
    first = await check(cached, tenant)
    assert cached.cache.get(tenant.id, "agent_executions", datetime.now(UTC)) is not None
    again = await check(cached, tenant)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["X-Quota-Used"] == first.headers["X-Quota-Used"] == "0"


async def test_usage_counted_by_another_process_reaches_the_check(
    cached: CachedApi, dbs: Databases, tenant: TenantWithKey
) -> None:
    period_start = (await _period(dbs, tenant.id))[0]
    await fill_then_change(
        cached,
        dbs,
        tenant,
        "INSERT INTO usage_period_counters (tenant_id, metric, period_start, period_end, quantity) "
        "VALUES (:t, 'agent_executions', :a, :b, 100)",
        t=tenant.id,
        a=period_start,
        b=period_start + timedelta(days=30),
    )
    blocked = await check(cached, tenant)
    assert blocked.status_code == 402
    assert blocked.json()["reason"] == "hard_cap_reached"
    assert blocked.headers["X-Quota-Used"] == "100"


async def test_a_suspension_by_the_worker_reaches_the_check(
    cached: CachedApi, dbs: Databases, tenant: TenantWithKey
) -> None:
    await check(cached, tenant)
    seen = cached.cache.invalidations
    await set_access_status(dbs, tenant.id, "suspended")
    await eventually(lambda: cached.cache.invalidations > seen, "the change notification")
    response = await check(cached, tenant)
    assert (response.status_code, response.json()["reason"]) == (402, "payment_overdue")


async def test_an_override_written_elsewhere_reaches_the_check(
    cached: CachedApi, dbs: Databases, tenant: TenantWithKey
) -> None:
    await fill_then_change(
        cached,
        dbs,
        tenant,
        "INSERT INTO entitlement_overrides (tenant_id, metric, included, reason, actor) "
        "VALUES (:t, 'agent_executions', 7, 'test', 'test')",
        t=tenant.id,
    )
    assert (await check(cached, tenant)).headers["X-Quota-Limit"] == "7"


async def test_a_truncate_empties_the_cache(
    cached: CachedApi, dbs: Databases, tenant: TenantWithKey
) -> None:
    await fill_then_change(cached, dbs, tenant, "TRUNCATE entitlement_overrides")
    assert cached.cache.get(tenant.id, "agent_executions", datetime.now(UTC)) is None


async def test_this_process_sees_its_own_usage_without_waiting_for_the_notification(
    cached: CachedApi, dbs: Databases, tenant: TenantWithKey
) -> None:
    # Notifications are dropped from here on: only the local invalidation after the ingestion
    # commit can make the next check see the new usage.
    cached.cache.notified = lambda _payload: None  # type: ignore[method-assign]
    before = await check(cached, tenant)
    assert (before.status_code, before.headers["X-Quota-Used"]) == (200, "0")  # now cached
    recorded = await cached.client.post(
        "/api/billing/usage", json=_event("seen-at-once", 100), headers=tenant.headers
    )
    assert recorded.status_code == 201
    after = await check(cached, tenant)
    assert (after.status_code, after.headers["X-Quota-Used"]) == (402, "100")


async def test_an_override_set_through_this_process_applies_at_once(
    cached: CachedApi, dbs: Databases, tenant: TenantWithKey
) -> None:
    cached.cache.notified = lambda _payload: None  # type: ignore[method-assign]
    assert (await check(cached, tenant)).headers["X-Quota-Limit"] == "100"
    put = await cached.client.put(
        f"/api/billing/operator/tenants/{tenant.id}/quota-overrides/agent_executions",
        json={"included": 250, "reason": "pilot"},
        headers=await operator_headers(dbs),
    )
    assert put.status_code == 200, put.text
    assert (await check(cached, tenant)).headers["X-Quota-Limit"] == "250"


async def test_without_the_listening_connection_checks_read_postgres(
    cached: CachedApi, dbs: Databases, tenant: TenantWithKey
) -> None:
    await check(cached, tenant)
    pid = cached.listener.backend_pid
    assert pid is not None
    cached.listener._retry_seconds = 3600  # stay disconnected for the rest of the test
    await admin_sql(dbs, "SELECT pg_terminate_backend(:pid)", pid=pid)
    await eventually(lambda: not cached.cache.live, "the cache noticing the lost connection")
    # Nothing is served from memory now: a change that nobody announces is seen at once.
    await admin_sql(
        dbs,
        "ALTER TABLE tenants DISABLE TRIGGER tenants_quota_change; "
        "UPDATE tenants SET access_status = 'suspended' WHERE id = :t; "
        "ALTER TABLE tenants ENABLE TRIGGER tenants_quota_change",
        t=tenant.id,
    )
    response = await check(cached, tenant)
    assert (response.status_code, response.json()["reason"]) == (402, "payment_overdue")
    assert cached.cache.get(tenant.id, "agent_executions", datetime.now(UTC)) is None


async def test_the_listener_reconnects_and_the_cache_comes_back(
    cached: CachedApi, dbs: Databases, tenant: TenantWithKey
) -> None:
    cached.listener._retry_seconds = 0.05
    first_pid = cached.listener.backend_pid
    await admin_sql(dbs, "SELECT pg_terminate_backend(:pid)", pid=first_pid)
    await eventually(
        lambda: cached.cache.live and cached.listener.backend_pid not in (None, first_pid),
        "a new listening connection",
    )
    await check(cached, tenant)
    assert cached.cache.get(tenant.id, "agent_executions", datetime.now(UTC)) is not None


async def _period(dbs: Databases, tenant_id: UUID) -> tuple[datetime, datetime]:
    async with dbs.admin.transaction() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT current_period_start, current_period_end FROM subscriptions "
                    "WHERE tenant_id = :t"
                ),
                {"t": tenant_id},
            )
        ).one()
    return row[0], row[1]


def _event(key: str, quantity: int) -> dict[str, object]:
    return {
        "metric": "agent_executions",
        "quantity": quantity,
        "timestamp": datetime.now(UTC).isoformat(),
        "idempotency_key": key,
    }
