"""Engine invoices, their items and their payment attempts: the writes of the subscription and
dunning workflows' activities. Every write is idempotent under activity retries (invoices by
`billing_key`, attempts by their idempotency key, projections by `version`). Callers hold a
tenant transaction; nothing here commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.audit import record_audit
from adapters.db.tables import dunning_attempts, invoice_items, invoices
from workflows.subscription_io import InvoiceLinePayload, RecordInvoiceInput


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


async def insert_invoice(conn: AsyncConnection, inv: RecordInvoiceInput, actor: str) -> bool:
    """Write the draft invoice, its items and its audit row; False (nothing written) when its
    billing key is already recorded: a period is never billed twice."""
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
    await record_audit(
        conn,
        actor=actor,
        action="invoice.issued",
        subject_type="invoice",
        subject_id=inv.invoice_id,
        tenant_id=UUID(inv.tenant_id),
        request_id=inv.request_id,
        before=None,
        after={
            "status": "draft",
            "total": inv.total,
            "currency": inv.currency,
            "billing_reason": inv.billing_reason,
            "period_start": inv.period_start,
            "period_end": inv.period_end,
        },
    )
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


@dataclass(frozen=True)
class Transition:
    """What a projection changed: the audited fields as they were and as they are."""

    before: dict[str, Any]
    after: dict[str, Any]

    @property
    def changed(self) -> bool:
        return self.before != self.after


AUDITED = ("status", "amount_paid", "attempt_count")


async def audit_transition(
    conn: AsyncConnection,
    *,
    tenant_id: UUID,
    invoice_id: UUID,
    actor: str,
    transition: Transition,
    number: str | None = None,
    request_id: str | None = None,
) -> None:
    """One audit row when the projection changed status, amount paid or attempts (a write of
    Stripe document links alone is not a business change): `invoice.{status}` when the status
    moved, else `invoice.updated`."""
    if not transition.changed and number is None:
        return
    status = transition.after["status"]
    after = {**transition.after, **({"number": number} if number else {})}
    await record_audit(
        conn,
        actor=actor,
        action=f"invoice.{status}" if status != transition.before["status"] else "invoice.updated",
        subject_type="invoice",
        subject_id=str(invoice_id),
        tenant_id=tenant_id,
        before=transition.before,
        after=after,
        request_id=request_id,
    )


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
) -> Transition | None:
    """The subscription workflow's view of the invoice, with its Stripe document; the attempt
    count only grows. None when nothing was written."""
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
) -> Transition | None:
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


async def _project(
    conn: AsyncConnection, invoice_id: UUID, version: int, **values: Any
) -> Transition | None:
    """An older `version` never overwrites a newer one (a retried activity can land after a
    later one). None when nothing was written; else the audited fields before and after, from
    one statement (the row as the locking subquery read it, and as the update left it)."""
    old = (
        select(invoices.c.id, *(invoices.c[c].label(f"old_{c}") for c in AUDITED))
        .where(invoices.c.id == invoice_id, invoices.c.version < version)
        .with_for_update()
        .subquery("old")
    )
    row = (
        await conn.execute(
            update(invoices)
            .where(invoices.c.id == old.c.id)
            .values(version=version, updated_at=func.now(), **values)
            .returning(*(invoices.c[c] for c in AUDITED), *(old.c[f"old_{c}"] for c in AUDITED))
        )
    ).first()
    if row is None:
        return None
    n = len(AUDITED)
    return Transition(
        dict(zip(AUDITED, row[n:], strict=True)), dict(zip(AUDITED, row[:n], strict=True))
    )


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
