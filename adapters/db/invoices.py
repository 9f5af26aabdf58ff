"""Engine invoices, their items and their payment attempts: the writes of the subscription and
dunning workflows' activities. Every write is idempotent under activity retries (invoices by
`billing_key`, attempts by their idempotency key, projections by `version`). Callers hold a
tenant transaction; nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import dunning_attempts, invoice_items, invoices
from workflows.subscription_io import InvoiceLinePayload, RecordInvoiceInput


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


async def insert_invoice(conn: AsyncConnection, inv: RecordInvoiceInput) -> bool:
    """Write the draft invoice and its items; False (nothing written) when its billing key is
    already recorded: a period is never billed twice."""
    inserted = await conn.execute(
        insert(invoices)
        .values(
            id=UUID(inv.invoice_id),
            tenant_id=UUID(inv.tenant_id),
            subscription_id=UUID(inv.subscription_id),
            status="draft",
            billing_reason=inv.billing_reason,
            billing_key=inv.billing_key,
            currency=inv.currency,
            subtotal=inv.subtotal,
            total=inv.total,
            amount_due=inv.total,
            period_start=_ts(inv.period_start),
            period_end=_ts(inv.period_end),
            version=inv.version,
        )
        .on_conflict_do_nothing(index_elements=["billing_key"])
        .returning(invoices.c.id)
    )
    if inserted.first() is None:
        return False
    await _insert_items(conn, inv, inv.lines)
    return True


async def _insert_items(
    conn: AsyncConnection, inv: RecordInvoiceInput, lines: Sequence[InvoiceLinePayload]
) -> None:
    await conn.execute(
        invoice_items.insert(),
        [
            {
                "tenant_id": UUID(inv.tenant_id),
                "invoice_id": UUID(inv.invoice_id),
                "position": position,
                "kind": line.kind,
                "description": line.description,
                "metric": line.metric,
                "quantity": line.quantity,
                "amount": line.amount,
                "currency": inv.currency,
                "period_start": _ts(line.period_start),
                "period_end": _ts(line.period_end),
            }
            for position, line in enumerate(lines)
        ],
    )


async def invoice_for_billing_key(conn: AsyncConnection, billing_key: str) -> UUID | None:
    """The invoice that holds `billing_key` (RLS: only if it is the current tenant's)."""
    found: UUID | None = await conn.scalar(
        select(invoices.c.id).where(invoices.c.billing_key == billing_key)
    )
    return found


async def tenant_of_invoice(conn: AsyncConnection, invoice_id: UUID) -> UUID | None:
    found: UUID | None = await conn.scalar(
        select(invoices.c.tenant_id).where(invoices.c.id == invoice_id)
    )
    return found


async def find_by_stripe_invoice(
    conn: AsyncConnection, stripe_invoice_id: str
) -> tuple[UUID, UUID, UUID | None] | None:
    """(invoice, tenant, subscription) of the engine invoice mirrored as `stripe_invoice_id`."""
    row = (
        await conn.execute(
            select(invoices.c.id, invoices.c.tenant_id, invoices.c.subscription_id).where(
                invoices.c.stripe_invoice_id == stripe_invoice_id
            )
        )
    ).first()
    return None if row is None else (row.id, row.tenant_id, row.subscription_id)


async def project_invoice(
    conn: AsyncConnection,
    invoice_id: UUID,
    *,
    version: int,
    status: str,
    amount_paid: int,
    attempt_count: int,
    paid_at: str | None,
    stripe_invoice_id: str | None,
    hosted_invoice_url: str | None,
    invoice_pdf: str | None,
) -> bool:
    """The subscription workflow's view of the invoice, with its Stripe document; the attempt
    count only grows."""
    return await _project(
        conn,
        invoice_id,
        version,
        status=status,
        amount_paid=amount_paid,
        stripe_invoice_id=stripe_invoice_id,
        hosted_invoice_url=hosted_invoice_url,
        invoice_pdf=invoice_pdf,
        attempt_count=func.greatest(invoices.c.attempt_count, attempt_count),
        paid_at=_ts(paid_at),
    )


async def project_dunning_view(
    conn: AsyncConnection,
    invoice_id: UUID,
    *,
    version: int,
    status: str,
    amount_paid: int,
    attempt_count: int,
    paid_at: str | None,
) -> bool:
    """The dunning workflow's view of the invoice (it is the only writer while it runs)."""
    return await _project(
        conn,
        invoice_id,
        version,
        status=status,
        attempt_count=attempt_count,
        amount_paid=amount_paid,
        paid_at=_ts(paid_at),
    )


async def _project(conn: AsyncConnection, invoice_id: UUID, version: int, **values: Any) -> bool:
    """An older `version` never overwrites a newer one (a retried activity can land after a
    later one). False when nothing was written."""
    result = await conn.execute(
        update(invoices)
        .where(invoices.c.id == invoice_id, invoices.c.version < version)
        .values(version=version, updated_at=func.now(), **values)
    )
    return result.rowcount == 1


async def record_attempt(
    conn: AsyncConnection,
    *,
    tenant_id: UUID,
    invoice_id: UUID,
    attempt: int,
    idempotency_key: str,
    attempted_at: str | None,
    outcome: str,
    decline_code: str | None,
    failure_message: str | None,
) -> bool:
    """One collection attempt, once per idempotency key; False when already recorded."""
    result = await conn.execute(
        insert(dunning_attempts)
        .values(
            tenant_id=tenant_id,
            invoice_id=invoice_id,
            attempt=attempt,
            idempotency_key=idempotency_key,
            attempted_at=_ts(attempted_at),
            outcome=outcome,
            decline_code=decline_code,
            failure_message=failure_message,
        )
        .on_conflict_do_nothing()
        .returning(dunning_attempts.c.id)
    )
    return result.first() is not None


async def stale_open_invoices(conn: AsyncConnection, before: datetime, limit: int) -> Sequence[Any]:
    """Open invoices mirrored to Stripe whose row has not changed since `before`, oldest
    first: the lost-webhook sweeper's candidates (ADR 0013)."""
    result = await conn.execute(
        select(
            invoices.c.id,
            invoices.c.tenant_id,
            invoices.c.subscription_id,
            invoices.c.stripe_invoice_id,
            invoices.c.status,
            invoices.c.amount_due,
            invoices.c.amount_paid,
        )
        .where(
            invoices.c.status == "open",
            invoices.c.stripe_invoice_id.is_not(None),
            invoices.c.updated_at < before,
        )
        .order_by(invoices.c.updated_at)
        .limit(limit)
    )
    return result.all()


_ASSIGN_NUMBER = text(
    """
WITH inv AS (
  SELECT id, (CASE WHEN total = 0 THEN 'ZERO' ELSE 'INV' END) || '-'
             || extract(year FROM coalesce(period_start, created_at) AT TIME ZONE 'UTC')::int
             AS series
  FROM invoices
  WHERE id = :invoice_id AND number IS NULL AND status <> 'draft'
  FOR UPDATE
), allocated AS (
  INSERT INTO invoice_number_series AS s (seller, series, last_value)
  SELECT :seller, series, 1 FROM inv
  ON CONFLICT (seller, series) DO UPDATE SET last_value = s.last_value + 1
  RETURNING series, last_value
)
UPDATE invoices SET number = allocated.series || '-' || lpad(allocated.last_value::text, 6, '0')
FROM allocated WHERE invoices.id = :invoice_id
RETURNING invoices.number
"""
)


async def assign_number(
    conn: AsyncConnection, invoice_id: UUID, seller: str = "default"
) -> str | None:
    """Give a finalised invoice its number, in the caller's transaction (ADR 0015): the next of
    its series (`INV-{year}` or, for a zero total, `ZERO-{year}`), gapless because the series
    row is updated in the same transaction, which a rollback undoes. None when it already has
    one or is still a draft."""
    number: str | None = (
        await conn.execute(_ASSIGN_NUMBER, {"invoice_id": invoice_id, "seller": seller})
    ).scalar_one_or_none()
    return number
