"""Tenant data export (ADR 0016) on the real stack: the zip holds every row the tenant has in
every table, and none of another tenant's, checked table by table against the database as
the owner; secrets are left out; progress is the workflow's query; the file expires."""

from __future__ import annotations

import asyncio
import io
import json
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import insert, select
from temporalio.testing import WorkflowEnvironment

from adapters.api_keys import Scope
from adapters.db import tables as t
from billing.exports import EXCLUDED_COLUMNS, EXPORT_TABLES, jsonable
from services.context import Services
from tests.db.test_row_level_security import _seed
from tests.factories.tenants import make_api_key, operator_headers
from tests.harness import Databases
from tests.replay.recording import record

EXTRA_EVENTS = 2_500  # more than one streaming batch


async def _two_seeded_tenants(dbs: Databases) -> tuple[UUID, UUID]:
    a, b = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC)
    async with dbs.admin.transaction() as conn:
        plan_id = (await conn.execute(select(t.plans.c.id).limit(1))).scalar_one()
        await _seed(conn, a, plan_id)
        await _seed(conn, b, plan_id)
        await conn.execute(
            insert(t.usage_events),
            [
                {"tenant_id": a, "metric": "api_calls", "quantity": n,
                 "occurred_at": now, "idempotency_key": f"bulk-{n}"}
                for n in range(EXTRA_EVENTS)
            ],
        )  # fmt: skip
    return a, b


async def _until_ready(api: httpx.AsyncClient, url: str, headers: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(300):
        response = await api.get(url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["status"] == "ready":
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"export never finished: {body}")


async def _owner_rows(dbs: Databases, table: str, tenant_id: UUID) -> list[dict[str, Any]]:
    tb = t.metadata.tables[table]
    owner = tb.c.id if table == "tenants" else tb.c.tenant_id
    async with dbs.admin.transaction() as conn:
        return [dict(r._mapping) for r in await conn.execute(select(tb).where(owner == tenant_id))]


def _key(table: str, row: dict[str, Any]) -> tuple[str, ...]:
    tb = t.metadata.tables[table]
    return tuple(str(jsonable(row[c.name])) for c in tb.primary_key.columns)


@pytest.mark.usefixtures("workers")
async def test_an_export_holds_every_row_of_the_tenant_and_none_of_another(
    api: httpx.AsyncClient, dbs: Databases, workflow_env: WorkflowEnvironment, services: Services
) -> None:
    a, b = await _two_seeded_tenants(dbs)
    headers = {"Authorization": f"Bearer {await make_api_key(dbs, a, [Scope.READ])}"}

    started = await api.post("/api/billing/exports", headers=headers)
    assert started.status_code == 202, started.text
    export_id = started.json()["export_id"]
    assert started.json()["tables_total"] == len(EXPORT_TABLES)
    done = await _until_ready(api, f"/api/billing/exports/{export_id}", headers)
    assert done["tables_done"] == len(EXPORT_TABLES)

    download = await api.get(f"/api/billing/exports/{export_id}/download", headers=headers)
    assert download.status_code == 200, download.text
    assert download.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(download.content))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["tenant_id"] == str(a)
    # Every tenant table is exported (a new one must be added to EXPORT_TABLES).
    assert {tb.name for tb in t.TENANT_TABLES} == set(EXPORT_TABLES)

    for table in EXPORT_TABLES:
        lines = archive.read(f"{table}.jsonl").decode().splitlines()
        exported = [json.loads(line) for line in lines]
        assert manifest["tables"][table]["rows"] == len(exported), table
        mine = await _owner_rows(dbs, table, a)
        theirs = await _owner_rows(dbs, table, b)
        if table == "audit_log":
            # The export's own audit row is written after the tables, when the zip is done.
            audited = [r for r in mine if r["action"] == "tenant.exported"]
            assert [r["subject_id"] for r in audited] == [export_id]
            mine = [r for r in mine if r["action"] != "tenant.exported"]
        assert mine, f"the seed has a row of {table} for the tenant"
        assert sorted(_key(table, r) for r in exported) == sorted(_key(table, r) for r in mine), (
            table
        )
        assert not {_key(table, r) for r in exported} & {_key(table, r) for r in theirs}, table
        for row in exported:
            assert not set(row) & EXCLUDED_COLUMNS.get(table, frozenset()), (table, row)
    usage = manifest["tables"]["usage_events"]["rows"]
    assert usage == EXTRA_EVENTS + 1

    # Another tenant cannot see it, an operator can; then it expires and is deleted.
    other = {"Authorization": f"Bearer {await make_api_key(dbs, b, [Scope.READ])}"}
    assert (await api.get(f"/api/billing/exports/{export_id}", headers=other)).status_code == 404
    op = await operator_headers(dbs)
    as_operator = await api.get(
        f"/api/billing/operator/tenants/{a}/exports/{export_id}", headers=op
    )
    assert as_operator.json()["sha256"] == done["sha256"]
    keep = services.settings.export_keep_hours
    await workflow_env.sleep(timedelta(hours=keep + 1))
    for _ in range(200):
        body = (await api.get(f"/api/billing/exports/{export_id}", headers=headers)).json()
        if body["status"] == "expired":
            break
        await asyncio.sleep(0.05)
    assert body["status"] == "expired"
    await record(
        workflow_env.client.get_workflow_handle(f"export:{a}:{export_id}"),
        "tenant_export_expired",
    )
    gone = await api.get(f"/api/billing/exports/{export_id}/download", headers=headers)
    assert gone.status_code == 404
    assert not services.settings.exports_path().joinpath(str(a), f"{export_id}.zip").exists()


async def test_bad_or_unknown_export_ids_are_404_or_422(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    tenant = uuid.uuid4()
    async with dbs.admin.transaction() as conn:
        await conn.execute(insert(t.tenants).values(id=tenant, name="x"))
    headers = {"Authorization": f"Bearer {await make_api_key(dbs, tenant, [Scope.READ])}"}
    assert (await api.get("/api/billing/exports/..%2F..%2Fetc", headers=headers)).status_code in (
        404,
        422,
    )
    unknown = await api.get(f"/api/billing/exports/{uuid.uuid4().hex}", headers=headers)
    assert unknown.status_code == 404


async def test_temporal_down_is_503_and_an_unknown_tenant_404(
    api: httpx.AsyncClient,
    dbs: Databases,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Routes that reach Temporal answer 503 with Retry-After when it is down, never 500."""
    from temporalio.service import RPCError, RPCStatusCode

    op = await operator_headers(dbs)
    missing = await api.post(f"/api/billing/operator/tenants/{uuid.uuid4()}/exports", headers=op)
    assert missing.status_code == 404
    tenant = uuid.uuid4()
    async with dbs.admin.transaction() as conn:
        await conn.execute(insert(t.tenants).values(id=tenant, name="x"))

    async def down(*_: object, **__: object) -> None:
        raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")

    monkeypatch.setattr(services.temporal, "start_workflow", down)
    monkeypatch.setattr(services.temporal, "get_workflow_handle_for", down)
    for method, path in (
        ("POST", f"/api/billing/operator/tenants/{tenant}/exports"),
        ("POST", f"/api/billing/operator/tenants/{tenant}/erase"),
    ):
        answer = await api.request(method, path, json={} if "erase" in path else None, headers=op)
        assert answer.status_code == 503, (path, answer.text)
        assert answer.json()["error"]["code"] == "service_unavailable"
        assert answer.headers["Retry-After"]
