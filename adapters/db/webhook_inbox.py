"""The Stripe webhook inbox (`webhook_events`), used with the worker role: events arrive before
anyone knows their tenant. Repositories never commit; callers own the transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import webhook_events
from billing.stripe_events import KnownInvoice, metadata_uuid

RECEIVED = "received"
DISPATCHED = "dispatched"
PROCESSED = "processed"
IGNORED = "ignored"
DEAD_LETTERED = "dead_lettered"
FINAL_STATUSES = frozenset({PROCESSED, IGNORED, DEAD_LETTERED})


@dataclass(frozen=True)
class InboxEvent:
    id: UUID
    stripe_event_id: str
    type: str
    status: str
    tenant_id: UUID | None
    attempts: int
    last_error: str | None
    replay_count: int
    received_at: datetime
    processed_at: datetime | None
    payload: Mapping[str, Any]


_COLUMNS = (
    webhook_events.c.id,
    webhook_events.c.stripe_event_id,
    webhook_events.c.type,
    webhook_events.c.status,
    webhook_events.c.tenant_id,
    webhook_events.c.attempts,
    webhook_events.c.last_error,
    webhook_events.c.replay_count,
    webhook_events.c.received_at,
    webhook_events.c.processed_at,
    webhook_events.c.payload,
)


@dataclass(frozen=True)
class Stored:
    inserted: bool
    # The row's status after the insert (the existing row's when it was a duplicate).
    status: str
    replay_count: int
    # The engine's invoice the event names, read by the same statement (ADR 0024): None when
    # the event names none the engine has, or none was asked for.
    known: KnownInvoice | None = None


# One statement, its own transaction (the endpoint's whole write): insert unless the id is in
# the inbox already, and answer with the row's status either way, and with the engine's invoice
# the event names ($8: the engine's id from metadata, else $9: the Stripe id), so routing needs
# no second round trip. The payload is stored as Stripe sent it (the verified body; jsonb
# normalizes it).
_STORE = """
WITH ins AS (
  INSERT INTO webhook_events
    (stripe_event_id, type, api_version, livemode, payload, status, processed_at)
  VALUES ($1, $2, $3, $4, $5::jsonb, $6, CASE WHEN $7 THEN now() END)
  ON CONFLICT (stripe_event_id) DO NOTHING
  RETURNING status, replay_count
), stored AS (
  SELECT true AS inserted, status, replay_count FROM ins
  UNION ALL
  SELECT false, status, replay_count FROM webhook_events
  WHERE stripe_event_id = $1 AND NOT EXISTS (SELECT 1 FROM ins)
), known AS (
  (SELECT id, tenant_id, subscription_id, status AS invoice_status, attempt_count,
          stripe_invoice_id
   FROM invoices WHERE id = $8::uuid)
  UNION ALL
  (SELECT id, tenant_id, subscription_id, status, attempt_count, stripe_invoice_id
   FROM invoices WHERE $8::uuid IS NULL AND stripe_invoice_id = $9::text)
)
SELECT s.inserted, s.status, s.replay_count, k.*
FROM stored s LEFT JOIN known k ON true
"""
_EXISTING = "SELECT false, status, replay_count FROM webhook_events WHERE stripe_event_id = $1"


async def store_event(
    connection: Any,
    *,
    event_id: str,
    event_type: str,
    api_version: str | None,
    livemode: bool,
    body: bytes,
    status: str,
    invoice_id: str | None = None,
    stripe_invoice_id: str | None = None,
) -> Stored:
    """Insert the event unless its id is already in the inbox (Stripe delivers at least once),
    and read the engine's invoice it names (`invoice_id`: the engine's id from the metadata,
    `stripe_invoice_id`: Stripe's; see `known_invoice`).

    `connection`: a bare asyncpg connection outside any transaction (`Database.raw_pool()`):
    the webhook endpoint's hot path, one round trip instead of BEGIN/INSERT/COMMIT through
    SQLAlchemy. `body` is the verified request body, valid JSON."""
    engine_id = metadata_uuid(invoice_id)
    row = await connection.fetchrow(
        _STORE,
        event_id,
        event_type,
        api_version,
        livemode,
        body.decode(),
        status,
        status in FINAL_STATUSES,
        engine_id,
        stripe_invoice_id,
    )
    if row is None:
        # A concurrent delivery of the same event inserted it after this statement's snapshot:
        # ON CONFLICT waited for it to commit; a new statement sees it.
        existing = await connection.fetchrow(_EXISTING, event_id)
        known = await known_invoice(connection, engine_id, stripe_invoice_id)
        return Stored(existing[0], existing[1], existing[2], known)
    return Stored(row[0], row[1], row[2], _known(row, stripe_invoice_id))


async def get_event(conn: AsyncConnection, event_id: str) -> InboxEvent | None:
    row = (
        await conn.execute(select(*_COLUMNS).where(webhook_events.c.stripe_event_id == event_id))
    ).first()
    return InboxEvent(**row._mapping) if row is not None else None


async def mark_dispatched(conn: AsyncConnection, event_id: str) -> None:
    # Only from `received`: the workflow may already have finished and marked the row.
    await conn.execute(
        update(webhook_events)
        .where(webhook_events.c.stripe_event_id == event_id, webhook_events.c.status == RECEIVED)
        .values(status=DISPATCHED, dispatched_at=func.now(), updated_at=func.now())
    )


# Routing at acceptance (ADR 0024): the invoice an event names, and the row settled, each one
# statement on the bare asyncpg pool (the dispatch queue's hot path, as the insert is). A
# cross-tenant read by the worker role, as the `stripe_event` workflow's resolve step does.
_INVOICE_BY_ID = """
SELECT id, tenant_id, subscription_id, status AS invoice_status, attempt_count, stripe_invoice_id
FROM invoices WHERE id = $1
"""
_INVOICE_BY_STRIPE_ID = """
SELECT id, tenant_id, subscription_id, status AS invoice_status, attempt_count, stripe_invoice_id
FROM invoices WHERE stripe_invoice_id = $1
"""
_SETTLE_ROUTED = """
UPDATE webhook_events AS w
SET status = 'processed', tenant_id = s.tenant_id, attempts = w.attempts + 1,
    last_error = s.detail, processed_at = now(), updated_at = now()
FROM unnest($1::text[], $2::uuid[], $3::text[]) AS s(stripe_event_id, tenant_id, detail)
WHERE w.stripe_event_id = s.stripe_event_id AND w.status IN ('received', 'dispatched')
"""


async def known_invoice(
    connection: Any, invoice_id: UUID | None, stripe_invoice_id: str | None
) -> KnownInvoice | None:
    """The engine's invoice an event names, by the engine's id (its metadata) or the Stripe
    id; both must agree when both are given. `connection`: a bare asyncpg connection."""
    if invoice_id is not None:
        row = await connection.fetchrow(_INVOICE_BY_ID, invoice_id)
    elif stripe_invoice_id is not None:
        row = await connection.fetchrow(_INVOICE_BY_STRIPE_ID, stripe_invoice_id)
    else:
        return None
    return _known(row, stripe_invoice_id)


def _known(row: Mapping[str, Any] | None, stripe_invoice_id: str | None) -> KnownInvoice | None:
    """The invoice columns of `row` (`id` None: the outer join found none)."""
    if row is None or row["id"] is None:
        return None
    if stripe_invoice_id is not None and row["stripe_invoice_id"] not in (None, stripe_invoice_id):
        return None  # metadata naming another invoice than the Stripe object: not placed
    return KnownInvoice(
        invoice_id=str(row["id"]),
        tenant_id=str(row["tenant_id"]),
        subscription_id=str(row["subscription_id"]) if row["subscription_id"] else None,
        status=row["invoice_status"],
        attempt_count=row["attempt_count"],
    )


@dataclass(frozen=True)
class Settlement:
    """An event routed at acceptance: its tenant, and what became of it (None: signalled)."""

    event_id: str
    tenant_id: UUID
    detail: str | None


async def settle_routed(connection: Any, settled: Sequence[Settlement]) -> None:
    """Events routed at acceptance: `processed`, each with its tenant and what became of it,
    in one statement; only rows still `received`/`dispatched` (a workflow run that raced one
    keeps its own outcome). `connection`: a bare asyncpg connection."""
    ordered = sorted(settled, key=lambda s: s.event_id)  # rows locked in one order
    await connection.execute(
        _SETTLE_ROUTED,
        [s.event_id for s in ordered],
        [s.tenant_id for s in ordered],
        [s.detail for s in ordered],
    )


async def claim_undispatched(
    conn: AsyncConnection, *, limit: int, min_age_seconds: float
) -> list[tuple[str, int]]:
    """Lock up to `limit` rows still `received` after `min_age_seconds` (SKIP LOCKED: several
    dispatchers share the work); returns (event id, replay count) pairs, oldest first."""
    rows = await conn.execute(
        select(webhook_events.c.stripe_event_id, webhook_events.c.replay_count)
        .where(
            webhook_events.c.status == RECEIVED,
            webhook_events.c.received_at
            < func.now() - text("make_interval(secs => :age)").bindparams(age=min_age_seconds),
        )
        .order_by(webhook_events.c.received_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return [(r.stripe_event_id, r.replay_count) for r in rows]


async def set_tenant(conn: AsyncConnection, event_id: str, tenant_id: UUID) -> None:
    await conn.execute(
        update(webhook_events)
        .where(webhook_events.c.stripe_event_id == event_id)
        .values(tenant_id=tenant_id, updated_at=func.now())
    )


async def record_outcome(
    conn: AsyncConnection, event_id: str, *, status: str | None, attempts: int, error: str | None
) -> str | None:
    """Record an attempt's outcome; the event's type, or None when no row has that id."""
    values: dict[str, Any] = {"attempts": attempts, "last_error": error, "updated_at": func.now()}
    if status is not None:
        values["status"] = status
        values["processed_at"] = func.now()
    result = await conn.execute(
        update(webhook_events)
        .where(webhook_events.c.stripe_event_id == event_id)
        .values(values)
        .returning(webhook_events.c.type)
    )
    event_type: str | None = result.scalar_one_or_none()
    return event_type


async def list_by_status(
    conn: AsyncConnection, status: str, *, limit: int = 100, after: datetime | None = None
) -> list[InboxEvent]:
    query = select(*_COLUMNS).where(webhook_events.c.status == status)
    if after is not None:
        query = query.where(webhook_events.c.received_at > after)
    rows = await conn.execute(query.order_by(webhook_events.c.received_at).limit(limit))
    return [InboxEvent(**r._mapping) for r in rows]


async def prepare_replay(
    conn: AsyncConnection, event_ids: Sequence[str] | None
) -> list[tuple[str, int, str]]:
    """Reset the named events (or, with None, every dead-lettered one) to `received` with the
    next replay number; the caller then starts `stripe-event:{id}:replay:{n}` after the commit.
    If that start fails, the re-dispatcher finds the row `received` and starts the same id.
    Each answer: (event id, replay number, the status it had before)."""
    condition = (
        webhook_events.c.stripe_event_id.in_(list(event_ids))
        if event_ids is not None
        else webhook_events.c.status == DEAD_LETTERED
    )
    old = (
        select(webhook_events.c.stripe_event_id, webhook_events.c.status)
        .where(condition)
        .with_for_update()
        .subquery("old")
    )
    rows = await conn.execute(
        update(webhook_events)
        .where(webhook_events.c.stripe_event_id == old.c.stripe_event_id)
        .values(
            status=RECEIVED,
            replay_count=webhook_events.c.replay_count + 1,
            attempts=0,
            last_error=None,
            dispatched_at=None,
            processed_at=None,
            updated_at=func.now(),
        )
        .returning(webhook_events.c.stripe_event_id, webhook_events.c.replay_count, old.c.status)
    )
    return [(r[0], r[1], r[2]) for r in rows]
