"""Per-tenant API rate limits (ADR 0012): a tenant at its limit gets 429 with `Retry-After` and
the RateLimit headers while another tenant is unaffected; two API app instances on one database
share the limit; the webhook endpoint has its own limit per source address; operators set
overrides, audited with before and after."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import types
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select

from adapters.db import rate_limits as repo
from adapters.db.tables import audit_log
from api.app import create_app
from services import rate_limits
from services.context import Services
from services.errors import RateLimited
from tests.factories.stripe_events import TEST_WEBHOOK_SECRET, signed_request, stripe_event
from tests.factories.tenants import TenantWithKey, make_tenant, operator_headers
from tests.harness import Databases

READ = "/api/billing/account"


@pytest.fixture(autouse=True)
def inside_one_window(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """The limiter's windows are fixed (ADR 0012): a test whose requests straddled a window's
    end saw its counts start again and its expected 429 answered 200 (it happened in CI). The
    limiter's wall clock here starts halfway through a window and runs at the real pace, so no
    test of this module crosses a window's end."""
    window = services.settings.rate_limit_window_seconds
    real = time.time()
    base = real - real % window + window / 2
    clock = types.SimpleNamespace(
        time=lambda: base + (time.time() - real), monotonic=time.monotonic
    )
    monkeypatch.setattr(rate_limits, "time", clock)


async def _limit(
    api: httpx.AsyncClient, dbs: Databases, tenant: TenantWithKey, cls: str, n: int | None
) -> httpx.Response:
    return await api.put(
        f"/api/billing/operator/tenants/{tenant.id}/rate-limits",
        json={"route_class": cls, "per_window": n, "reason": "test"},
        headers=await operator_headers(dbs),
    )


async def test_a_tenant_at_its_limit_gets_429_and_another_tenant_does_not(
    api: httpx.AsyncClient, dbs: Databases, services: Services
) -> None:
    a, b = await make_tenant(dbs), await make_tenant(dbs)
    set_a = await _limit(api, dbs, a, "read", 3)
    assert set_a.status_code == 200, set_a.text
    assert set_a.json()["limits"]["read"] == 3
    assert set_a.json()["overridden"] == ["read"]

    for _ in range(3):
        assert (await api.get(READ, headers=a.headers)).status_code == 200
    refused = await api.get(READ, headers=a.headers)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "rate_limited"
    window = services.settings.rate_limit_window_seconds
    assert 1 <= int(refused.headers["Retry-After"]) <= window
    assert refused.headers["RateLimit-Limit"] == "3"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Reset"] == refused.headers["Retry-After"]
    assert refused.headers["RateLimit-Policy"] == f"3;w={window}"

    # B has the default limit and is not touched by A's; A's other classes neither.
    for _ in range(5):
        assert (await api.get(READ, headers=b.headers)).status_code == 200
    check = await api.get("/api/billing/usage/check?metric=api_calls&quantity=1", headers=a.headers)
    assert check.status_code != 429, check.text


@pytest.fixture
async def second_api(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    """Another API process on the same database: its own Services (its own leases and caches)."""
    other = dataclasses.replace(services, extras={})
    app = create_app(other.settings, services=other)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_two_api_instances_share_the_limit(
    api: httpx.AsyncClient, second_api: httpx.AsyncClient, dbs: Databases
) -> None:
    tenant = await make_tenant(dbs)
    assert (await _limit(api, dbs, tenant, "read", 6)).status_code == 200
    answers = []
    for _ in range(4):  # alternate between the two instances: 8 requests against a limit of 6
        answers.append((await api.get(READ, headers=tenant.headers)).status_code)
        answers.append((await second_api.get(READ, headers=tenant.headers)).status_code)
    assert answers.count(200) == 6, answers
    assert answers.count(429) == 2, answers
    assert answers[-2:] == [429, 429]


async def test_the_webhook_endpoint_is_limited_per_source_address(
    api: httpx.AsyncClient, services: Services
) -> None:
    services.settings = services.settings.model_copy(
        update={
            "stripe_webhook_secrets": [SecretStr(TEST_WEBHOOK_SECRET)],
            "rate_limit_webhook_per_address": 3,
        }
    )
    statuses = []
    for _ in range(4):
        body, headers = signed_request(stripe_event("customer.updated", {"id": "cus_x"}))
        statuses.append(
            await api.post("/api/billing/webhooks/stripe", content=body, headers=headers)
        )
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    assert "Retry-After" in statuses[-1].headers


async def test_overrides_are_audited_with_before_and_after_and_operator_only(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    tenant = await make_tenant(dbs)
    assert (await _limit(api, dbs, tenant, "ingest", 50)).status_code == 200
    assert (await _limit(api, dbs, tenant, "ingest", 80)).status_code == 200
    back = await _limit(api, dbs, tenant, "ingest", None)
    assert back.status_code == 200
    assert back.json()["overridden"] == []
    async with dbs.admin.transaction() as conn:
        rows = (
            await conn.execute(
                select(audit_log.c.actor, audit_log.c.details)
                .where(audit_log.c.action == "tenant.rate_limit_set")
                .order_by(audit_log.c.id)
            )
        ).all()
    assert [
        (r.details["before"]["per_window"], r.details["after"]["per_window"]) for r in rows
    ] == [(None, 50), (50, 80), (80, None)]
    assert all(r.actor.startswith("api_key:") and r.details["reason"] == "test" for r in rows)
    as_tenant = await api.put(
        f"/api/billing/operator/tenants/{tenant.id}/rate-limits",
        json={"route_class": "read", "per_window": 1},
        headers=tenant.headers,
    )
    assert as_tenant.status_code == 403


async def test_a_database_outage_lets_requests_through_the_limiter(
    api: httpx.AsyncClient, dbs: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The limiter never turns an outage into 429s (the route's own work answers 503)."""
    tenant = await make_tenant(dbs)
    assert (await _limit(api, dbs, tenant, "read", 1)).status_code == 200

    async def refused(*_: object, **__: object) -> int:
        raise ConnectionRefusedError("postgres is down")

    monkeypatch.setattr(repo, "lease", refused)
    for _ in range(3):
        assert (await api.get(READ, headers=tenant.headers)).status_code == 200


async def test_concurrent_requests_get_the_whole_limit_and_no_more(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Requests that find the process's lease empty at once share the next lease: each used to
    lease a chunk of its own and keep only its own count, which spent the shared window many
    times faster than requests came (the webhook bench got 429 at a tenth of its limit)."""
    from services import rate_limits

    # One window for the whole test, whatever the clock does meanwhile.
    monkeypatch.setattr(rate_limits.time, "time", lambda: 1_900_000_000.0)
    limiter = rate_limits.RateLimiter(window_seconds=60, cache_seconds=1)
    subject, limit = f"ip:test-{uuid.uuid4()}", 40  # leased two at a time (limit / 20)

    async def one() -> bool:
        try:
            await limiter.take(services, subject, rate_limits.WEBHOOK, limit)
        except RateLimited:
            return False
        return True

    admitted = await asyncio.gather(*(one() for _ in range(64)))

    assert admitted.count(True) == limit
    assert admitted.count(False) == 64 - limit
