"""The append-only audit log (the app and worker roles may only INSERT and SELECT it; rows
leave only through `audit_log_purge`, the retention job's function)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Select, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import audit_log
from adapters.logs import REQUEST_ID

Snapshot = Mapping[str, Any] | None


async def record_audit(
    conn: AsyncConnection,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str | None,
    tenant_id: UUID | None,
    before: Snapshot,
    after: Snapshot,
    details: Mapping[str, Any] | None = None,
    request_id: str | None = None,
) -> None:
    """One row (ADR 0019). `before` and `after` are required: the changed fields as they were
    and as they are (None for an entity that did not exist before, or no longer exists after),
    kept in `details` under those names. Inside an API request the row carries the request's
    id; a command that a workflow applies passes the id it was sent with."""
    await conn.execute(
        audit_log.insert().values(
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            tenant_id=tenant_id,
            details={
                **dict(details or {}),
                "before": None if before is None else dict(before),
                "after": None if after is None else dict(after),
            },
            request_id=request_id or REQUEST_ID.get(),
        )
    )


@dataclass(frozen=True)
class AuditFilter:
    tenant_id: UUID | None = None
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


COLUMNS = (
    audit_log.c.id,
    audit_log.c.created_at,
    audit_log.c.tenant_id,
    audit_log.c.actor,
    audit_log.c.action,
    audit_log.c.subject_type,
    audit_log.c.subject_id,
    audit_log.c.request_id,
    audit_log.c.details,
)


def _query(f: AuditFilter) -> Select[Any]:
    query = select(*COLUMNS)
    if f.tenant_id is not None:
        query = query.where(audit_log.c.tenant_id == f.tenant_id)
    if f.actor is not None:
        query = query.where(audit_log.c.actor == f.actor)
    if f.action is not None:
        query = query.where(audit_log.c.action == f.action)
    if f.since is not None:
        query = query.where(audit_log.c.created_at >= f.since)
    if f.until is not None:
        query = query.where(audit_log.c.created_at < f.until)
    return query


async def page(
    conn: AsyncConnection, f: AuditFilter, *, limit: int, after_id: int | None
) -> list[dict[str, Any]]:
    """Oldest first, `limit` rows after the row `after_id` (the cursor)."""
    query = _query(f)
    if after_id is not None:
        query = query.where(audit_log.c.id > after_id)
    rows = await conn.execute(query.order_by(audit_log.c.id).limit(limit))
    return [dict(r._mapping) for r in rows]


async def stream(conn: AsyncConnection, f: AuditFilter) -> AsyncIterator[dict[str, Any]]:
    """Every matching row, oldest first, through a server-side cursor."""
    result = await conn.stream(_query(f).order_by(audit_log.c.id).execution_options(yield_per=1000))
    async for row in result:
        yield dict(row._mapping)


async def purge_before(conn: AsyncConnection, before: datetime, actor: str) -> int:
    """Delete rows older than `before` through the one function allowed to, which records the
    purge in the log itself."""
    purged = await conn.scalar(
        text("SELECT audit_log_purge(:before, :actor)"), {"before": before, "actor": actor}
    )
    return int(purged or 0)


async def count(conn: AsyncConnection) -> int:
    return int(await conn.scalar(select(func.count()).select_from(audit_log)) or 0)
