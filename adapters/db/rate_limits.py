"""Rate-limit state shared by every API replica (ADR 0012): leases of a window's requests, and
the per-tenant overrides of the limits in settings.

A lease is one statement: it adds up to `chunk` requests to the window's `granted`, never past
`limit`, and returns how many it added (0 when the window is spent). The row lock serialises
concurrent leases, so the leases of all processes together never exceed the limit.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from asyncpg import Pool  # type: ignore[import-untyped]
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import rate_limit_windows, tenant_rate_limits

_LEASE = """
INSERT INTO rate_limit_windows AS w (subject, route_class, window_start, granted, last_lease)
VALUES ($1, $2, $3, LEAST($4::int, $5::int), LEAST($4::int, $5::int))
ON CONFLICT (subject, route_class, window_start) DO UPDATE
   SET granted = LEAST(w.granted + $4::int, $5::int),
       last_lease = LEAST(w.granted + $4::int, $5::int) - w.granted
 WHERE w.granted < $5::int
RETURNING last_lease
"""

_FORGET = "DELETE FROM rate_limit_windows WHERE window_start < $1"

_OVERRIDES = "SELECT route_class, per_window FROM tenant_rate_limits WHERE tenant_id = $1"


async def lease(
    pool: Pool, subject: str, route_class: str, window_start: datetime, chunk: int, limit: int
) -> int:
    """Requests leased for this process from the window (0: none left)."""
    async with pool.acquire() as conn:
        leased = await conn.fetchval(_LEASE, subject, route_class, window_start, chunk, limit)
    return int(leased or 0)


async def forget_before(pool: Pool, window_start: datetime) -> None:
    """Drop the bookkeeping of windows that have ended."""
    async with pool.acquire() as conn:
        await conn.execute(_FORGET, window_start)


async def overrides(pool: Pool, tenant_id: UUID) -> dict[str, int]:
    """The tenant's per-class limits that replace the defaults. Read as the worker role (the
    key lookup's), which every tenant's row is visible to."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(_OVERRIDES, tenant_id)
    return {row["route_class"]: int(row["per_window"]) for row in rows}


async def set_override(
    conn: AsyncConnection, tenant_id: UUID, route_class: str, per_window: int | None, actor: str
) -> int | None:
    """Set (or with None, remove) a tenant's limit for a class; the previous one."""
    before = await conn.scalar(
        select(tenant_rate_limits.c.per_window).where(
            tenant_rate_limits.c.tenant_id == tenant_id,
            tenant_rate_limits.c.route_class == route_class,
        )
    )
    if per_window is None:
        await conn.execute(
            delete(tenant_rate_limits).where(
                tenant_rate_limits.c.tenant_id == tenant_id,
                tenant_rate_limits.c.route_class == route_class,
            )
        )
    else:
        statement = insert(tenant_rate_limits).values(
            tenant_id=tenant_id, route_class=route_class, per_window=per_window, actor=actor
        )
        await conn.execute(
            statement.on_conflict_do_update(
                index_elements=["tenant_id", "route_class"],
                set_={"per_window": per_window, "actor": actor, "updated_at": func.now()},
            )
        )
    return None if before is None else int(before)


async def list_overrides(conn: AsyncConnection, tenant_id: UUID) -> dict[str, int]:
    rows = await conn.execute(
        select(tenant_rate_limits.c.route_class, tenant_rate_limits.c.per_window).where(
            tenant_rate_limits.c.tenant_id == tenant_id
        )
    )
    return {row.route_class: int(row.per_window) for row in rows}


__all__ = [
    "forget_before",
    "lease",
    "list_overrides",
    "overrides",
    "rate_limit_windows",
    "set_override",
]
