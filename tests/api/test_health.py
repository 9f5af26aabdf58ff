"""/healthz says the process is up; /readyz checks Postgres, Temporal and Stripe by name."""

from __future__ import annotations

import dataclasses

import httpx

from adapters.db.session import Database
from adapters.stripe_fake import FakeStripeGateway
from api.app import create_app
from services.context import Services
from tests.harness import free_port


async def _get(services: Services, path: str) -> httpx.Response:
    app = create_app(services.settings, services=services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.get(path)


async def test_healthz_and_readyz_ok(services: Services) -> None:
    assert (await _get(services, "/healthz")).json() == {"status": "ok"}
    ready = await _get(services, "/readyz")
    assert ready.status_code == 200
    assert {k: v["status"] for k, v in ready.json()["components"].items()} == {
        "postgres": "ok",
        "temporal": "ok",
        "stripe": "ok",
    }


async def test_readyz_names_stripe_when_it_is_down(
    services: Services, stripe_fake: FakeStripeGateway
) -> None:
    stripe_fake.start_outage()
    ready = await _get(services, "/readyz")
    assert ready.status_code == 503
    components = ready.json()["components"]
    assert components["stripe"]["status"] == "down"
    assert components["postgres"]["status"] == "ok"
    assert components["temporal"]["status"] == "ok"


async def test_readyz_names_postgres_when_it_is_down(services: Services) -> None:
    unreachable = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x", pool_size=1)
    try:
        ready = await _get(dataclasses.replace(services, system_db=unreachable), "/readyz")
    finally:
        await unreachable.dispose()
    assert ready.status_code == 503
    components = ready.json()["components"]
    assert components["postgres"]["status"] == "down"
    assert components["postgres"]["detail"]
    assert components["stripe"]["status"] == "ok"


async def test_readyz_names_temporal_when_it_is_down(services: Services) -> None:
    from temporalio.client import Client

    nowhere = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True)
    ready = await _get(dataclasses.replace(services, temporal=nowhere), "/readyz")
    assert ready.status_code == 503
    components = ready.json()["components"]
    assert components["temporal"]["status"] == "down"
    assert components["postgres"]["status"] == "ok"
