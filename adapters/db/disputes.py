"""An invoice's dispute and the tenant's suspension for it (ADR 0021). Callers hold the
tenant's transaction; nothing here commits."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import invoices

# Only a suspension for a dispute is lifted, and only when no other dispute is open.
_LIFT = text(
    "UPDATE tenants SET access_status = 'active', suspension_reason = NULL, updated_at = now() "
    "WHERE id = :t AND access_status = 'suspended' AND suspension_reason = 'dispute' "
    "AND NOT EXISTS (SELECT 1 FROM invoices i WHERE i.tenant_id = :t "
    "AND i.dispute_status = 'open')"
)


async def set_dispute(
    conn: AsyncConnection, invoice_id: UUID, dispute_id: str, status: str
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The invoice's dispute as it was and is; None when nothing changed (a duplicate or
    repeated event)."""
    old = (
        await conn.execute(
            select(invoices.c.dispute_status, invoices.c.dispute_id)
            .where(invoices.c.id == invoice_id)
            .with_for_update()
        )
    ).first()
    if old is None or (old.dispute_status, old.dispute_id) == (status, dispute_id):
        return None
    await conn.execute(
        update(invoices)
        .where(invoices.c.id == invoice_id)
        .values(dispute_status=status, dispute_id=dispute_id, updated_at=func.now())
    )
    before = {"dispute_status": old.dispute_status, "dispute_id": old.dispute_id}
    return before, {"dispute_status": status, "dispute_id": dispute_id}


async def lift_dispute_suspension(conn: AsyncConnection, tenant_id: UUID) -> bool:
    return bool((await conn.execute(_LIFT, {"t": tenant_id})).rowcount)
