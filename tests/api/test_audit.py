"""The audit trail (ADR 0017): operators read and export it with filters (tenant, actor,
action, time range), tenants read their own; rows carry the request id; and the retention
purge removes only rows older than the retention period, through its function only."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx
import pytest
from sqlalchemy import delete, insert, select, text
from sqlalchemy.exc import DBAPIError
from temporalio.testing import WorkflowEnvironment

from adapters.db.tables import audit_log
from cli.audit import audit_export
from config import Settings
from tests.factories.tenants import TenantWithKey, make_tenant, operator_headers
from tests.harness import Databases
from tests.replay.recording import record
from workflows.audit_retention import AuditRetentionWorkflow
from workflows.audit_retention_io import RetentionInput


@pytest.fixture
def now() -> datetime:
    """The test's instant, read when the test runs (never at import: a long run would age it)."""
    return datetime.now(UTC)


async def _row(dbs: Databases, tenant: UUID | None, action: str, at: datetime, actor: str) -> None:
    async with dbs.admin.transaction() as conn:
        await conn.execute(
            insert(audit_log).values(
                tenant_id=tenant, actor=actor, action=action, subject_type="test",
                subject_id="x", details={"before": 1, "after": 2}, created_at=at,
            )
        )  # fmt: skip


@pytest.fixture
async def seeded(dbs: Databases, now: datetime) -> tuple[TenantWithKey, TenantWithKey]:
    a, b = await make_tenant(dbs), await make_tenant(dbs)
    await _row(dbs, a.id, "test.old", now - timedelta(days=10), "api_key:a")
    await _row(dbs, a.id, "test.recent", now - timedelta(hours=1), "api_key:a")
    await _row(dbs, b.id, "test.recent", now - timedelta(hours=2), "api_key:b")
    await _row(dbs, None, "test.operator", now - timedelta(hours=3), "api_key:op")
    return a, b


async def test_operators_filter_page_and_export_the_trail(
    api: httpx.AsyncClient,
    dbs: Databases,
    seeded: tuple[TenantWithKey, TenantWithKey],
    now: datetime,
) -> None:
    a, b = seeded
    op = await operator_headers(dbs)
    since = (now - timedelta(days=1)).isoformat()
    recent = await api.get(
        "/api/billing/operator/audit", params={"action": "test.recent", "since": since}, headers=op
    )
    assert recent.status_code == 200, recent.text
    assert sorted(r["tenant_id"] for r in recent.json()["data"]) == sorted([str(a.id), str(b.id)])
    only_a = await api.get(
        "/api/billing/operator/audit",
        params={"tenant_id": str(a.id), "since": since, "limit": 1},
        headers=op,
    )
    assert [r["action"] for r in only_a.json()["data"]] == ["test.recent"]
    by_actor = await api.get(
        "/api/billing/operator/audit", params={"actor": "api_key:op"}, headers=op
    )
    assert [r["action"] for r in by_actor.json()["data"]] == ["test.operator"]
    # Pages follow one another without overlap.
    first = await api.get("/api/billing/operator/audit", params={"limit": 2}, headers=op)
    after = first.json()["next_after"]
    second = await api.get(
        "/api/billing/operator/audit", params={"limit": 2, "after": after}, headers=op
    )
    assert not {r["id"] for r in first.json()["data"]} & {r["id"] for r in second.json()["data"]}

    window = {"since": since, "until": now.isoformat(), "action": "test.recent"}
    lines = await api.get(
        "/api/billing/operator/audit/export", params={**window, "format": "jsonl"}, headers=op
    )
    assert lines.status_code == 200
    assert lines.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in lines.text.splitlines()]
    assert sorted(r["tenant_id"] for r in rows) == sorted([str(a.id), str(b.id)])
    assert all(r["details"] == {"before": 1, "after": 2} for r in rows)
    table = await api.get(
        "/api/billing/operator/audit/export", params={**window, "format": "csv"}, headers=op
    )
    parsed = list(csv.DictReader(io.StringIO(table.text)))
    assert sorted(r["tenant_id"] for r in parsed) == sorted([str(a.id), str(b.id)])
    assert json.loads(parsed[0]["details"]) == {"before": 1, "after": 2}


@pytest.mark.usefixtures("seeded")
def test_the_cli_exports_a_time_range(settings: Settings, now: datetime) -> None:
    out = io.BytesIO()
    since = (now - timedelta(days=1)).isoformat()
    code = audit_export(
        settings, fmt="jsonl", tenant=None, actor=None, action="test.recent",
        since=since, until=None, out=out,
    )  # fmt: skip
    assert code == 0
    rows = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    assert len(rows) == 2
    assert {r["action"] for r in rows} == {"test.recent"}
    assert (
        audit_export(
            settings,
            fmt="csv",
            tenant="not-a-uuid",
            actor=None,
            action=None,
            since=None,
            until=None,
        )
        == 2
    )


async def test_a_tenant_reads_and_exports_only_its_own_rows(
    api: httpx.AsyncClient, seeded: tuple[TenantWithKey, TenantWithKey]
) -> None:
    a, _ = seeded
    own = await api.get("/api/billing/audit", headers=a.headers)
    assert own.status_code == 200, own.text
    assert {r["tenant_id"] for r in own.json()["data"]} == {str(a.id)}
    assert {"test.old", "test.recent"} <= {r["action"] for r in own.json()["data"]}
    exported = await api.get("/api/billing/audit/export", headers=a.headers)
    assert {json.loads(line)["tenant_id"] for line in exported.text.splitlines()} == {str(a.id)}
    refused = await api.get("/api/billing/operator/audit", headers=a.headers)
    assert refused.status_code == 403


async def test_rows_written_in_a_request_carry_its_id(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    tenant = await make_tenant(dbs)
    headers = {**(await operator_headers(dbs)), "X-Request-Id": "req-audit-1"}
    changed = await api.put(
        f"/api/billing/operator/tenants/{tenant.id}/rate-limits",
        json={"route_class": "read", "per_window": 10},
        headers=headers,
    )
    assert changed.status_code == 200
    async with dbs.admin.transaction() as conn:
        ids = (
            (
                await conn.execute(
                    select(audit_log.c.request_id).where(
                        audit_log.c.action == "tenant.rate_limit_set"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert ids == ["req-audit-1"]


@pytest.mark.usefixtures("workers")
async def test_the_retention_purge_removes_only_rows_past_the_retention_period(
    dbs: Databases, workflow_env: WorkflowEnvironment, settings: Settings
) -> None:
    tenant = await make_tenant(dbs)
    now = await workflow_env.get_current_time()
    await _row(dbs, tenant.id, "test.ancient", now - timedelta(days=31 * 13), "api_key:a")
    await _row(dbs, tenant.id, "test.kept", now - timedelta(days=31 * 11), "api_key:a")
    await _row(dbs, None, "test.kept", now - timedelta(days=1), "api_key:op")

    handle = await workflow_env.client.start_workflow(
        AuditRetentionWorkflow.run,
        RetentionInput(months=12),
        id=f"audit-retention-{uuid.uuid4().hex[:8]}",
        task_queue=settings.task_queue,
    )
    result = await handle.result()
    await record(handle, "audit_retention_purged")

    assert result.purged == 1
    async with dbs.admin.transaction() as conn:
        left = (await conn.execute(select(audit_log.c.action, audit_log.c.actor))).all()
    actions = [r.action for r in left]
    assert "test.ancient" not in actions
    assert actions.count("test.kept") == 2
    purge = [r for r in left if r.action == "audit_log.purged"]
    assert len(purge) == 1
    assert purge[0].actor.startswith("system:audit-retention-")


async def test_no_role_deletes_or_updates_audit_rows_outside_the_purge(
    dbs: Databases, now: datetime
) -> None:
    tenant = await make_tenant(dbs)
    await _row(dbs, tenant.id, "test.row", now, "api_key:a")
    for db in (dbs.admin, dbs.worker):
        with pytest.raises(DBAPIError):
            async with db.transaction() as conn:
                await conn.execute(delete(audit_log).where(audit_log.c.tenant_id == tenant.id))
    with pytest.raises(DBAPIError):
        async with dbs.admin.transaction() as conn:
            await conn.execute(text("UPDATE audit_log SET action = 'forged'"))
    with pytest.raises(DBAPIError):
        async with dbs.app.tenant_transaction(tenant.id) as conn:
            await conn.execute(text("SELECT audit_log_purge(now(), 'me')"))


async def _actions_of_request(dbs: Databases, tenant: UUID, request_id: str) -> list[str]:
    async with dbs.admin.transaction() as conn:
        return list(
            (
                await conn.execute(
                    select(audit_log.c.action)
                    .where(audit_log.c.tenant_id == tenant, audit_log.c.request_id == request_id)
                    .order_by(audit_log.c.id)
                )
            )
            .scalars()
            .all()
        )


@pytest.mark.usefixtures("workers")
async def test_what_a_workflow_writes_for_a_command_names_the_request_that_sent_it(
    api: httpx.AsyncClient, dbs: Databases, workflow_env: WorkflowEnvironment
) -> None:
    """A command goes to the subscription workflow as an update, and the workflow writes its
    audit rows in the worker, outside the request: the command carries the request's id there
    (ADR 0019), onto the change and onto the invoice it issues and every move of that
    invoice. The sign-up's first change is written by the run's start, which no command
    carries: it names no request (ADR 0019 says how such rows are traced)."""
    import asyncio

    from tests.api.test_billing_api import SUB, subscribe_with_card

    tenant = await subscribe_with_card(api, dbs)
    op = {**(await operator_headers(dbs)), "X-Request-Id": "req-charge-1"}
    charged = await api.post(
        f"/api/billing/operator/tenants/{tenant.id}/charges",
        json={"amount": 5000, "description": "Setup fee", "invoice": "now",
              "idempotency_key": "setup-1"},
        headers=op,
    )  # fmt: skip
    assert charged.status_code == 201, charged.text
    for _ in range(200):  # the invoice is collected after the answer, at the latest
        charge_rows = await _actions_of_request(dbs, tenant.id, "req-charge-1")
        if "invoice.paid" in charge_rows:
            break
        await asyncio.sleep(0.05)
    assert charge_rows == [
        "invoice.issued", "invoice.open", "invoice.paid", "subscription.charge_added"
    ]  # fmt: skip
    canceled = await api.delete(SUB, headers={**tenant.headers, "X-Request-Id": "req-cancel-1"})
    assert canceled.status_code == 200, canceled.text
    assert await _actions_of_request(dbs, tenant.id, "req-cancel-1") == [
        "subscription.cancel_scheduled"
    ]
    async with dbs.admin.transaction() as conn:
        trial = (
            await conn.execute(
                select(audit_log.c.request_id, audit_log.c.actor).where(
                    audit_log.c.tenant_id == tenant.id,
                    audit_log.c.action == "subscription.trial_started",
                )
            )
        ).one()
    assert trial.request_id is None
    workflow_id = (await api.get(SUB, headers=tenant.headers)).json()["workflow_id"]
    await record(workflow_env.client.get_workflow_handle(workflow_id), "subscription_request_id")
