"""Grace windows (`grace_periods`) and the tenant suspension they hold: the SQL of the grace
workflow's activities and of the operator's grace routes. Callers pass a connection inside a
tenant transaction (RLS scopes every statement to that tenant); nothing here commits."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import grace_periods
from billing.grace import PAYMENT

_UPSERT = text(
    "INSERT INTO grace_periods (tenant_id, kind, subject, workflow_id, started_at, expires_at, "
    "resolved_at, resolution, actor) VALUES (:tenant_id, :kind, :subject, :workflow_id, "
    ":started_at, :expires_at, :resolved_at, :resolution, :actor) "
    "ON CONFLICT (workflow_id) DO UPDATE SET expires_at = EXCLUDED.expires_at, "
    "resolved_at = EXCLUDED.resolved_at, resolution = EXCLUDED.resolution, "
    "actor = EXCLUDED.actor, updated_at = now() "
    # Once resolved, a late retry of an earlier projection must not reopen the row.
    "WHERE grace_periods.resolved_at IS NULL"
)

# Payment windows whose suspension is in force: expired (or ended by an operator), not settled.
IN_FORCE = "('expired', 'ended')"

_LOCK_TENANT = text("SELECT 1 FROM tenants WHERE id = :t FOR UPDATE")

_MARK_IN_FORCE = text(
    "UPDATE grace_periods SET resolution = :r, resolved_at = now(), actor = :a, "
    "updated_at = now() WHERE workflow_id = :w AND resolved_at IS NULL"
)

_SETTLE = text(
    "UPDATE grace_periods SET resolution = :r, resolved_at = now(), actor = :a, "
    "updated_at = now() WHERE workflow_id = :w AND resolution IN " + IN_FORCE
)

_SUSPEND = text(
    "UPDATE tenants SET access_status = 'suspended', suspension_reason = :r, "
    "updated_at = now() WHERE id = :t AND access_status = 'active'"
)

# Only a suspension some payment window caused is lifted here (one still held by another unpaid
# invoice stays); an operator's manual suspension is not distinguished (ADR 0006).
_LIFT_SUSPENSION = text(
    "UPDATE tenants SET access_status = 'active', suspension_reason = NULL, updated_at = now() "
    "WHERE id = :t AND access_status = 'suspended' AND NOT EXISTS ("
    f"SELECT 1 FROM grace_periods g WHERE g.tenant_id = :t AND g.kind = '{PAYMENT}' "
    "AND g.resolution IN " + IN_FORCE + ")"
)

_MISSING_SOFT_CAP_WINDOWS = text(
    "SELECT c.tenant_id, c.metric, c.period_start FROM usage_period_counters c "
    "WHERE c.soft_cap_exceeded_at IS NOT NULL AND c.blocked_at IS NULL "
    "AND c.period_end > now() AND NOT EXISTS (SELECT 1 FROM grace_periods g "
    "WHERE g.workflow_id = 'grace:' || c.tenant_id || ':' || c.metric || ':' "
    # the same key as billing.usage.period_key()
    "|| to_char(c.period_start AT TIME ZONE 'UTC', "
    '\'YYYYMMDD"T"HH24MISS"Z"\'))'
)


async def upsert_window(
    conn: AsyncConnection,
    *,
    tenant_id: UUID,
    kind: str,
    subject: str,
    workflow_id: str,
    started_at: datetime | None,
    expires_at: datetime | None,
    resolved_at: datetime | None,
    resolution: str | None,
    actor: str | None,
) -> bool:
    """The window's row as its workflow sees it; False when it was already resolved."""
    result = await conn.execute(
        _UPSERT,
        {
            "tenant_id": tenant_id,
            "kind": kind,
            "subject": subject,
            "workflow_id": workflow_id,
            "started_at": started_at,
            "expires_at": expires_at,
            "resolved_at": resolved_at,
            "resolution": resolution,
            "actor": actor,
        },
    )
    return bool(result.rowcount)


async def lock_tenant(conn: AsyncConnection, tenant_id: UUID) -> None:
    """Suspensions and settlements of one tenant's windows run one after the other."""
    await conn.execute(_LOCK_TENANT, {"t": tenant_id})


async def mark_in_force(
    conn: AsyncConnection, workflow_id: str, resolution: str, actor: str | None
) -> None:
    await conn.execute(_MARK_IN_FORCE, {"w": workflow_id, "r": resolution, "a": actor})


async def settle(
    conn: AsyncConnection, workflow_id: str, resolution: str, actor: str | None
) -> None:
    await conn.execute(_SETTLE, {"w": workflow_id, "r": resolution, "a": actor})


async def suspend_tenant(conn: AsyncConnection, tenant_id: UUID, reason: str) -> bool:
    """Suspend an active tenant (`reason`: payment or operator); False if it was not active."""
    result = await conn.execute(_SUSPEND, {"t": tenant_id, "r": reason})
    return bool(result.rowcount)


async def lift_suspension(conn: AsyncConnection, tenant_id: UUID) -> bool:
    """Reactivate the tenant unless another payment window still holds it suspended."""
    result = await conn.execute(_LIFT_SUSPENSION, {"t": tenant_id})
    return bool(result.rowcount)


async def missing_soft_cap_windows(conn: AsyncConnection) -> list[tuple[UUID, str, datetime]]:
    """(tenant, metric, period start) of soft-capped counters, any tenant, with no window."""
    rows = (await conn.execute(_MISSING_SOFT_CAP_WINDOWS)).all()
    return [(r[0], r[1], r[2]) for r in rows]


async def get_window(conn: AsyncConnection, tenant_id: UUID, grace_id: UUID) -> Any:
    return (
        await conn.execute(
            select(grace_periods).where(
                grace_periods.c.id == grace_id, grace_periods.c.tenant_id == tenant_id
            )
        )
    ).first()


async def list_windows(conn: AsyncConnection, tenant_id: UUID) -> list[Any]:
    """Newest first."""
    return list(
        (
            await conn.execute(
                select(grace_periods)
                .where(grace_periods.c.tenant_id == tenant_id)
                .order_by(grace_periods.c.started_at.desc())
            )
        ).all()
    )
