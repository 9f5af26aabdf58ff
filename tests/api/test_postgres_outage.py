"""Postgres stopped while traffic hits every kind of route: key lookups, usage writes, quota
checks, reads, the webhook endpoint and operator routes. Every answer is 2xx or 503 (with
`Retry-After`), never a 500 and never a dropped connection; after the restart, every event the
API acknowledged is stored."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from alembic import command
from pydantic import SecretStr
from sqlalchemy import func, select

from adapters.db.migrate import alembic_config
from adapters.db.plans import sync_catalog
from adapters.db.tables import usage_events, webhook_events
from api.app import create_app
from billing.catalog import Catalog
from devstack.postgres import EmbeddedPostgres
from services.context import Services
from tests.factories.stripe_events import TEST_WEBHOOK_SECRET, signed_request, stripe_event
from tests.factories.subscriptions import make_subscription
from tests.factories.tenants import make_tenant, operator_headers
from tests.harness import Databases, free_port

ROUNDS_BEFORE, OUTAGE_ROUNDS, ROUNDS_AFTER = 3, 12, 6


@pytest.fixture
async def outage_dbs(catalog: Catalog) -> AsyncIterator[tuple[EmbeddedPostgres, Databases]]:
    base = Path(tempfile.mkdtemp(prefix="billing-test-pg-outage-"))
    server = EmbeddedPostgres(base / "data", free_port(), fsync=False)
    server.start()
    dbs: Databases | None = None
    try:
        server.ensure_database("billing_outage")
        url = server.url("billing_outage")
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
        dbs = Databases.connect(url)
        async with dbs.admin.transaction() as conn:
            await sync_catalog(conn, catalog)
        yield server, dbs
    finally:
        if dbs is not None:
            await dbs.dispose()
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


async def test_every_route_answers_2xx_or_503_through_a_postgres_outage(
    outage_dbs: tuple[EmbeddedPostgres, Databases], services: Services
) -> None:
    server, dbs = outage_dbs
    # Short caches, so key lookups and quota reads do reach the stopped database.
    settings = services.settings.model_copy(
        update={
            "api_key_cache_seconds": 0.05,
            "quota_cache_seconds": 0.05,
            "stripe_webhook_secrets": [SecretStr(TEST_WEBHOOK_SECRET)],
        }
    )
    outage = Services(settings, dbs.app, dbs.worker, services.temporal, services.stripe,
                      services.catalog)  # fmt: skip
    # A second API process whose key cache outlives the outage: its requests pass
    # authentication without the database and reach each route's own reads and writes.
    cached_keys = Services(
        settings.model_copy(update={"api_key_cache_seconds": 600.0}),
        dbs.app, dbs.worker, services.temporal, services.stripe, services.catalog,
    )  # fmt: skip
    tenant = await make_tenant(dbs)
    await make_subscription(dbs, tenant.id)
    operator = await operator_headers(dbs)
    keys = itertools.count()
    acknowledged_usage: list[str] = []
    acknowledged_events: list[str] = []
    statuses: Counter[tuple[str, int]] = Counter()
    missing_retry_after: list[str] = []

    today = datetime.now(UTC).date().isoformat()

    async def one_round(api: httpx.AsyncClient) -> None:
        key = f"evt-{next(keys)}"
        event = stripe_event("customer.subscription.updated", {"id": f"sub_{key}"})
        body, headers = signed_request(event)
        requests = {
            "usage write": api.post(
                "/api/billing/usage",
                json={
                    "metric": "api_calls",
                    "quantity": 1,
                    "idempotency_key": key,
                    "timestamp": datetime.now(UTC).isoformat(),
                },
                headers=tenant.headers,
            ),
            "usage check": api.get(
                "/api/billing/usage/check?metric=api_calls&quantity=1", headers=tenant.headers
            ),
            "read subscription": api.get("/api/billing/subscription", headers=tenant.headers),
            "read invoices": api.get("/api/billing/invoices", headers=tenant.headers),
            "read usage": api.get("/api/billing/usage", headers=tenant.headers),
            "read account": api.get("/api/billing/account", headers=tenant.headers),
            "usage export": api.get(
                "/api/billing/usage/export.csv",
                params={"start": today, "end": today},
                headers=tenant.headers,
            ),
            "webhook": api.post("/api/billing/webhooks/stripe", content=body, headers=headers),
            "operator": api.get(f"/api/billing/operator/tenants/{tenant.id}", headers=operator),
        }
        answers = await asyncio.gather(*requests.values())  # an exception here fails the test
        for name, response in zip(requests, answers, strict=True):
            statuses[(name, response.status_code)] += 1
            assert response.status_code < 300 or response.status_code == 503, (
                name,
                response.status_code,
                response.text,
            )
            if response.status_code == 503 and "retry-after" not in response.headers:
                missing_retry_after.append(f"{name}: {response.text}")
            if response.status_code == 503 and name != "usage check":
                assert "error" in response.json(), (name, response.text)
            if name == "usage write" and response.status_code == 201:
                acknowledged_usage.append(key)
            if name == "webhook" and response.status_code == 200:
                acknowledged_events.append(event["id"])
        await asyncio.sleep(0.06)  # past the cache TTLs

    def client(services_: Services) -> httpx.AsyncClient:
        app = create_app(services_.settings, services=services_)
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )

    async with client(outage) as api, client(cached_keys) as warm:
        for _ in range(ROUNDS_BEFORE):
            await one_round(api)
            await one_round(warm)
        server.stop()  # the pools still hold connections to the dead server
        for _ in range(OUTAGE_ROUNDS):
            await one_round(api)
            await one_round(warm)
        server.start()
        for _ in range(ROUNDS_AFTER):
            await one_round(api)
            await one_round(warm)

    assert not missing_retry_after, missing_retry_after
    # The outage was really seen, by every route (the warm client's requests got past auth).
    for name in (
        "usage write", "read subscription", "read invoices", "read usage", "read account",
        "usage export", "webhook", "operator",
    ):  # fmt: skip
        assert statuses[(name, 503)] >= OUTAGE_ROUNDS, (name, statuses)
        # ...and each answered 2xx again after the restart.
        assert statuses[(name, 200)] + statuses[(name, 201)] >= 2 * ROUNDS_BEFORE + 1, statuses
    await dbs.admin.engine.dispose()  # its pooled connections died with the server
    async with dbs.admin.transaction() as conn:
        stored_usage = set(
            (await conn.execute(select(usage_events.c.idempotency_key))).scalars().all()
        )
        stored_events = set(
            (await conn.execute(select(webhook_events.c.stripe_event_id))).scalars().all()
        )
        assert await conn.scalar(select(func.count()).select_from(usage_events)) == len(
            stored_usage
        )
    assert set(acknowledged_usage) <= stored_usage
    assert set(acknowledged_events) <= stored_events
