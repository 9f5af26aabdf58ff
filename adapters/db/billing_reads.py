"""Tenant-facing reads of invoices, change history and payment methods (RLS-scoped by the
caller's `tenant_transaction`: another tenant's rows are simply not there)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import invoice_items, invoices, payment_methods, subscription_changes


async def list_invoices(
    conn: AsyncConnection, *, limit: int, after: tuple[datetime, UUID] | None
) -> list[dict[str, Any]]:
    """Newest first, keyset-paginated on (created_at, id)."""
    query = select(invoices).order_by(invoices.c.created_at.desc(), invoices.c.id.desc())
    if after is not None:
        created_at, invoice_id = after
        query = query.where(
            or_(
                invoices.c.created_at < created_at,
                and_(invoices.c.created_at == created_at, invoices.c.id < invoice_id),
            )
        )
    rows = await conn.execute(query.limit(limit))
    return [dict(r._mapping) for r in rows]


async def get_invoice(conn: AsyncConnection, invoice_id: UUID) -> dict[str, Any] | None:
    row = (await conn.execute(select(invoices).where(invoices.c.id == invoice_id))).first()
    return dict(row._mapping) if row else None


async def invoice_lines(conn: AsyncConnection, invoice_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(invoice_items)
        .where(invoice_items.c.invoice_id == invoice_id)
        .order_by(invoice_items.c.position)
    )
    return [dict(r._mapping) for r in rows]


async def list_changes(conn: AsyncConnection, subscription_id: UUID) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(subscription_changes)
        .where(subscription_changes.c.subscription_id == subscription_id)
        # When it took effect, then the order it was recorded in: a renewal's `renewed` (at the
        # period boundary) precedes the `payment_failed` of its collection.
        .order_by(subscription_changes.c.effective_at, subscription_changes.c.id)
    )
    return [dict(r._mapping) for r in rows]


async def list_payment_methods(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(
        select(payment_methods)
        .where(payment_methods.c.detached_at.is_(None))
        .order_by(payment_methods.c.is_default.desc(), payment_methods.c.created_at.desc())
    )
    return [dict(r._mapping) for r in rows]
