"""Nothing lost: Temporal down (a dev server this test starts, stops and restarts on the same
database file) and Postgres unreachable for the webhook endpoint."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from alembic import command
from sqlalchemy import func, select
from temporalio.client import Client

from adapters.db.migrate import alembic_config
from adapters.db.session import Database
from adapters.db.tables import webhook_events
from adapters.dispatch import DispatchConfig, Dispatcher
from adapters.stripe_fake import FakeStripeGateway
from api.app import create_app
from billing.catalog import Catalog
from config import WORKER_ROLE, Settings
from devstack.postgres import EmbeddedPostgres
from devstack.temporal import TemporalDevServer
from services.context import Services
from tests.factories.stripe_events import signed_request, stripe_event
from tests.harness import Databases, free_port, with_user
from tests.webhooks.conftest import make_subscriber, run_workers, settle_dispatch, stop_workers
from tests.webhooks.test_stripe_webhooks import URL, invoice_event, open_invoice
from workflows.stripe_event_io import StripeEventResult


@pytest.fixture
def outage_settings(settings: Settings) -> Settings:
    # Do not wait long for a Temporal that is known to be down.
    return settings.model_copy(update={"webhook_dispatch_timeout_seconds": 0.5})


@pytest.fixture
async def temporal_server(tmp_path: Path) -> AsyncIterator[TemporalDevServer]:
    server = TemporalDevServer(free_port(), db_file=tmp_path / "temporal.db")
    server.start(log_path=tmp_path / "temporal.log")
    try:
        yield server
    finally:
        server.stop()


def api_client(settings: Settings, services: Services) -> httpx.AsyncClient:
    app = create_app(settings, services=services)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def test_events_sent_while_temporal_is_down_are_processed_once_after_restart(
    temporal_server: TemporalDevServer,
    outage_settings: Settings,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    catalog: Catalog,
) -> None:
    settings = outage_settings
    client = await Client.connect(temporal_server.address)
    services = Services(settings, dbs.app, dbs.worker, client, stripe_fake, catalog)
    workers, tasks = await run_workers(client, dbs, stripe_fake, settings)
    sub = await make_subscriber(client, dbs, stripe_fake, settings)
    stripe_invoice_id, invoice_id = await open_invoice(stripe_fake, sub)
    await stop_workers(workers, tasks)

    temporal_server.stop()
    events = [
        invoice_event(t, sub, stripe_invoice_id, invoice_id, "open")
        for t in ("invoice.finalized", "invoice.payment_failed", "invoice.updated")
    ]
    async with api_client(settings, services) as api:
        for event in events:
            body, headers = signed_request(event)
            response = await api.post(URL, content=body, headers=headers)
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "received"
            # Stripe's retry of the same event while Temporal is still down: no second row.
            response = await api.post(URL, content=body, headers=headers)
            assert response.json()["duplicate"] is True
        # The API's own start attempts happen (and fail) while Temporal is down.
        await settle_dispatch(services)
    async with dbs.worker.transaction() as conn:
        statuses = (await conn.execute(select(webhook_events.c.status))).scalars().all()
    assert statuses == ["received"] * 3

    temporal_server.start()
    workers, tasks = await run_workers(client, dbs, stripe_fake, settings)
    try:
        dispatcher = Dispatcher(dbs.worker, client, DispatchConfig.from_settings(settings))
        started = 0
        for _ in range(50):  # the client reconnects to the restarted server on its own
            started += await dispatcher.redispatch_once(batch=2, min_age_seconds=0)
            if started >= len(events):
                break
            await asyncio.sleep(0.2)
        assert started == len(events)
        assert await dispatcher.redispatch_once(batch=10, min_age_seconds=0) == 0
        for event in events:
            result = await client.get_workflow_handle(
                f"stripe-event:{event['id']}", result_type=StripeEventResult
            ).result()
            assert result.status == "processed"
        state = await sub.state()
        assert sorted(s.event_id for s in state.applied) == sorted(e["id"] for e in events)
        await sub.handle.terminate("test over")
    finally:
        await stop_workers(workers, tasks)


async def test_postgres_unreachable_gives_503_and_nothing_is_lost_once_back(
    services: Services, dbs: Databases
) -> None:
    closed_port = free_port()
    down = Database(f"postgresql+asyncpg://billing_worker@127.0.0.1:{closed_port}/billing")
    event = stripe_event("customer.subscription.updated", {"id": "sub_1"})
    body, headers = signed_request(event)
    reachable = services.system_db
    services.system_db = down
    try:
        async with api_client(services.settings, services) as api:
            response = await api.post(URL, content=body, headers=headers)
            assert response.status_code == 503
            assert response.headers["Retry-After"]
            services.system_db = reachable
            # Stripe retries the same delivery once the database is back.
            retried = await api.post(URL, content=body, headers=headers)
            assert retried.status_code == 200
            assert retried.json()["duplicate"] is False
    finally:
        services.system_db = reachable
        await down.dispose()
    async with dbs.worker.transaction() as conn:
        count = (await conn.execute(select(func.count()).select_from(webhook_events))).scalar_one()
    assert count == 1


@pytest.fixture
async def own_postgres() -> AsyncIterator[EmbeddedPostgres]:
    """A PostgreSQL server this test may stop and start (data dir outside pytest's tmp root,
    see tests/conftest.py)."""
    base = Path(tempfile.mkdtemp(prefix="billing-test-pg-outage-"))
    server = EmbeddedPostgres(base / "data", free_port(), fsync=False)
    server.start()
    try:
        server.ensure_database("billing_outage")
        url = server.url("billing_outage")
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


async def test_postgres_stopped_under_a_warm_pool_gives_503_then_recovers(
    own_postgres: EmbeddedPostgres, services: Services
) -> None:
    url = own_postgres.url("billing_outage")
    db = Database(with_user(url, WORKER_ROLE), pool_size=2)
    outage = Services(
        services.settings,
        services.tenant_db,
        db,
        services.temporal,
        services.stripe,
        services.catalog,
    )
    before, during = (
        stripe_event("customer.subscription.updated", {"id": f"sub_{n}"}) for n in (1, 2)
    )
    try:
        async with api_client(services.settings, outage) as api:
            body, headers = signed_request(before)
            assert (await api.post(URL, content=body, headers=headers)).status_code == 200

            own_postgres.stop()  # the pool still holds connections to the dead server
            body, headers = signed_request(during)
            for _ in range(2):
                response = await api.post(URL, content=body, headers=headers)
                assert response.status_code == 503, response.text

            own_postgres.start()
            response = await api.post(URL, content=body, headers=headers)  # Stripe's retry
            assert response.status_code == 200, response.text
        async with db.transaction() as conn:
            stored = (await conn.execute(select(webhook_events.c.stripe_event_id))).scalars().all()
        assert sorted(stored) == sorted([before["id"], during["id"]])
    finally:
        await db.dispose()
