"""Routed events' rows are written in the background, many to a statement (ADR 0024): each
becomes `processed` with its tenant and what became of it, a row a workflow run has already
finished keeps that run's outcome, and a statement that fails leaves its rows `received` for
the re-dispatcher instead of raising into routing."""

from __future__ import annotations

import uuid
from uuid import UUID

from sqlalchemy import select, update

from adapters.db import webhook_inbox as inbox
from adapters.db.session import Database
from adapters.db.tables import webhook_events
from adapters.dispatch import Settler
from tests.db.test_webhook_inbox_store import _store_as
from tests.factories.tenants import make_tenant
from tests.harness import Databases, free_port


async def _received(dbs: Databases, n: int) -> list[str]:
    ids = [f"evt_{uuid.uuid4().hex}" for _ in range(n)]
    for event_id in ids:
        await _store_as(dbs, event_id)
    return ids


async def _rows(dbs: Databases, ids: list[str]) -> dict[str, tuple[str, UUID | None, str | None]]:
    async with dbs.admin.transaction() as conn:
        rows = await conn.execute(
            select(
                webhook_events.c.stripe_event_id,
                webhook_events.c.status,
                webhook_events.c.tenant_id,
                webhook_events.c.last_error,
            ).where(webhook_events.c.stripe_event_id.in_(ids))
        )
        return {r[0]: (r[1], r[2], r[3]) for r in rows}


async def test_routed_events_are_settled_in_batches_and_a_finished_run_keeps_its_outcome(
    dbs: Databases,
) -> None:
    tenant = await make_tenant(dbs)
    ids = await _received(dbs, 5)
    raced = ids[0]
    async with dbs.admin.transaction() as conn:  # a stripe_event run finished it first
        await conn.execute(
            update(webhook_events)
            .where(webhook_events.c.stripe_event_id == raced)
            .values(status=inbox.DEAD_LETTERED, last_error="the run's own outcome")
        )

    settler = Settler(dbs.worker, batch=2, concurrency=1)
    for n, event_id in enumerate(ids):
        settler.add("invoice.paid", inbox.Settlement(event_id, tenant.id, f"detail {n}"))
    await settler.drain()

    rows = await _rows(dbs, ids)
    assert rows[raced] == (inbox.DEAD_LETTERED, None, "the run's own outcome")
    assert {k: v for k, v in rows.items() if k != raced} == {
        event_id: (inbox.PROCESSED, tenant.id, f"detail {n}")
        for n, event_id in enumerate(ids)
        if event_id != raced
    }


async def test_a_failed_settlement_leaves_the_rows_to_the_redispatcher(dbs: Databases) -> None:
    tenant = await make_tenant(dbs)
    ids = await _received(dbs, 3)
    unreachable = Database(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
    try:
        settler = Settler(unreachable)
        for event_id in ids:
            settler.add("invoice.paid", inbox.Settlement(event_id, tenant.id, None))
        await settler.drain()  # does not raise
    finally:
        await unreachable.dispose()

    assert {status for status, _, _ in (await _rows(dbs, ids)).values()} == {inbox.RECEIVED}
    async with dbs.worker.transaction() as conn:
        claimed = {
            event_id
            for event_id, _ in await inbox.claim_undispatched(conn, limit=100, min_age_seconds=0)
        }
    assert set(ids) <= claimed
