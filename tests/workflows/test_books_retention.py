"""The purge of an erased tenant's books (ADR 0018): the `erased_books_purge` job removes every
row of a tenant erased longer ago than the legal retention period, in every table, its audit
rows and the tenant itself, and records that it did; a tenant erased more recently, and a
tenant never erased, keep every row; a second run changes nothing; no role deletes the books
outside the function."""

from __future__ import annotations

import uuid
from datetime import timedelta
from uuid import UUID

import pytest
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import DBAPIError
from temporalio.testing import WorkflowEnvironment

from adapters.db import tables as t
from config import Settings
from tests.db.test_row_level_security import _seed
from tests.harness import Databases
from tests.replay.recording import record
from workflows.audit_retention import ErasedBooksPurgeWorkflow
from workflows.audit_retention_io import BooksRetentionInput

TENANT_TABLES = [tb for tb in t.metadata.sorted_tables if "tenant_id" in tb.c]


async def _counts(dbs: Databases, tenant_id: UUID) -> dict[str, int]:
    """Rows of the tenant per table, as the owner sees them (the tenant's own row included)."""
    counts = {}
    async with dbs.admin.transaction() as conn:
        for tb in TENANT_TABLES:
            counts[tb.name] = int(
                await conn.scalar(
                    select(func.count()).select_from(tb).where(tb.c.tenant_id == tenant_id)
                )
                or 0
            )
        counts["tenants"] = int(
            await conn.scalar(
                select(func.count()).select_from(t.tenants).where(t.tenants.c.id == tenant_id)
            )
            or 0
        )
    return counts


@pytest.mark.usefixtures("workers")
async def test_the_books_purge_removes_only_tenants_erased_past_the_retention(
    dbs: Databases, workflow_env: WorkflowEnvironment, settings: Settings
) -> None:
    old, recent, live = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = await workflow_env.get_current_time()
    async with dbs.admin.transaction() as conn:
        plan_id = (await conn.execute(select(t.plans.c.id).limit(1))).scalar_one()
        for tenant_id in (old, recent, live):
            await _seed(conn, tenant_id, plan_id)
            await conn.execute(
                insert(t.audit_log).values(
                    tenant_id=tenant_id, actor="test", action="test.row", subject_type="test",
                    details={"before": None, "after": {}},
                )
            )  # fmt: skip
        for tenant_id, erased_at in (
            (old, now - timedelta(days=3700)),  # over 120 months
            (recent, now - timedelta(days=3600)),  # under 120 months
        ):
            await conn.execute(
                update(t.tenants).where(t.tenants.c.id == tenant_id).values(erased_at=erased_at)
            )
    before = {tenant_id: await _counts(dbs, tenant_id) for tenant_id in (old, recent, live)}
    # Every table holds rows of each tenant, so "nothing left" is a real check.
    assert all(n > 0 for n in before[old].values()), before[old]

    # No skipping while waiting for a result: the server would run its clock ten years ahead,
    # past the recent erasure's retention too.
    with workflow_env.auto_time_skipping_disabled():
        handle = await workflow_env.client.start_workflow(
            ErasedBooksPurgeWorkflow.run,
            BooksRetentionInput(months=120),
            id=f"erased-books-purge-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue,
        )
        result = await handle.result()
    await record(handle, "erased_books_purged")

    assert result.tenants == 1
    assert result.rows == sum(before[old].values())  # its rows, its tenant row counted once
    assert set((await _counts(dbs, old)).values()) == {0}
    assert await _counts(dbs, recent) == before[recent]
    assert await _counts(dbs, live) == before[live]
    async with dbs.admin.transaction() as conn:
        purged = (
            await conn.execute(
                select(t.audit_log).where(t.audit_log.c.action == "tenant.books_purged")
            )
        ).all()
    assert len(purged) == 1
    assert purged[0].subject_id == str(old)
    assert purged[0].tenant_id is None
    assert purged[0].actor.startswith("system:erased-books-purge-")
    assert purged[0].details["before"]["rows"]["invoices"] == before[old]["invoices"]
    assert purged[0].details["after"] == {"rows": 0}

    with workflow_env.auto_time_skipping_disabled():
        again = await workflow_env.client.execute_workflow(
            ErasedBooksPurgeWorkflow.run,
            BooksRetentionInput(months=120),
            id=f"erased-books-purge-{uuid.uuid4().hex[:8]}",
            task_queue=settings.task_queue,
        )
    assert (again.tenants, again.rows) == (0, 0)
    assert await _counts(dbs, recent) == before[recent]


async def test_the_books_of_a_tenant_not_erased_or_erased_recently_stay(dbs: Databases) -> None:
    """The function itself refuses: no erasure, or one inside the retention period."""
    tenant = uuid.uuid4()
    async with dbs.admin.transaction() as conn:
        plan_id = (await conn.execute(select(t.plans.c.id).limit(1))).scalar_one()
        await _seed(conn, tenant, plan_id)
    async with dbs.worker.transaction() as conn:
        refused = await conn.scalar(
            text("SELECT tenant_books_purge(:t, now(), 'test')"), {"t": tenant}
        )
        await conn.execute(
            update(t.tenants).where(t.tenants.c.id == tenant).values(erased_at=func.now())
        )
        too_soon = await conn.scalar(
            text("SELECT tenant_books_purge(:t, now() - interval '1 day', 'test')"), {"t": tenant}
        )
    assert (refused, too_soon) == (0, 0)
    assert (await _counts(dbs, tenant))["invoices"] > 0


async def test_the_app_role_cannot_purge_books(dbs: Databases) -> None:
    with pytest.raises(DBAPIError, match="permission denied"):
        async with dbs.app.transaction() as conn:
            await conn.execute(
                text("SELECT tenant_books_purge(:t, now(), 'x')"), {"t": uuid.uuid4()}
            )
