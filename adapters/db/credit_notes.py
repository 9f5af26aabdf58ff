"""Credit notes (ADR 0020): issued against an invoice under its row lock (so two concurrent
credit notes cannot together exceed what was paid, or what is due), numbered in the same
transaction from the gapless series table, audited; then their refund, or the lower amount due
of an open invoice, recorded. Callers hold a tenant transaction; nothing here commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.audit import record_audit
from adapters.db.tables import credit_notes, invoices
from billing.credit_notes import (
    OPEN_STATUSES,
    REDUCE_AMOUNT_DUE,
    Credited,
    CreditRefused,
    check_credit,
    credit_note_series,
    default_method,
    left_to_credit,
)

_NEXT_NUMBER = text(
    """
INSERT INTO invoice_number_series AS s (seller, series, last_value) VALUES (:seller, :series, 1)
ON CONFLICT (seller, series) DO UPDATE SET last_value = s.last_value + 1
RETURNING last_value
"""
)


@dataclass(frozen=True)
class CreditNoteRequest:
    tenant_id: UUID
    invoice_id: UUID
    amount: int
    reason: str
    idempotency_key: str
    actor: str
    source: str = "operator"  # operator | stripe
    # refund | credit_balance | reduce_amount_due; None: the invoice's status decides
    # (`billing.credit_notes.default_method`).
    method: str | None = None
    # A refund already made (a Stripe dashboard refund seen in `charge.refunded`).
    stripe_refund_id: str | None = None


@dataclass(frozen=True)
class Issued:
    row: dict[str, Any]
    created: bool
    stripe_invoice_id: str | None
    subscription_id: UUID | None = None


async def issue(conn: AsyncConnection, req: CreditNoteRequest, at: datetime) -> Issued:
    """The credit note for `req.idempotency_key`: the one issued before with that key (the
    same request again), or a new one. An operator's is checked against what is left to
    credit; one Stripe already refunded is recorded as the fact it is. Raises `CreditRefused`,
    or `LookupError` for an invoice the tenant does not have."""
    invoice = (
        await conn.execute(
            select(
                invoices.c.status,
                invoices.c.amount_paid,
                invoices.c.amount_due,
                invoices.c.currency,
                invoices.c.stripe_invoice_id,
                invoices.c.subscription_id,
            )
            .where(invoices.c.id == req.invoice_id)
            .with_for_update()
        )
    ).first()
    if invoice is None:
        raise LookupError(f"no invoice {req.invoice_id}")
    existing = await by_key(conn, req.idempotency_key)
    if existing is not None:
        asked = (req.invoice_id, req.amount, req.method or existing["method"])
        if (existing["invoice_id"], existing["amount"], existing["method"]) != asked:
            raise CreditRefused(
                "this idempotency key was used for another credit note "
                f"({existing['number']}: {existing['amount']} on invoice {existing['invoice_id']})"
            )
        return Issued(existing, False, invoice.stripe_invoice_id, invoice.subscription_id)
    method = req.method or default_method(invoice.status)
    notes = [
        Credited(r.amount, r.method, r.refund_status)
        for r in await conn.execute(
            select(
                credit_notes.c.amount, credit_notes.c.method, credit_notes.c.refund_status
            ).where(credit_notes.c.invoice_id == req.invoice_id)
        )
    ]
    before = left_to_credit(method, invoice.amount_paid, invoice.amount_due, notes)
    if req.source == "operator":
        after = check_credit(
            invoice.status, method, invoice.amount_paid, invoice.amount_due, notes, req.amount
        )
    else:
        after = max(before - req.amount, 0)
    series = credit_note_series(at)
    last = (await conn.execute(_NEXT_NUMBER, {"seller": "default", "series": series})).scalar_one()
    row = (
        await conn.execute(
            insert(credit_notes)
            .values(
                tenant_id=req.tenant_id,
                invoice_id=req.invoice_id,
                number=f"{series}-{last:06d}",
                amount=req.amount,
                currency=invoice.currency,
                reason=req.reason,
                source=req.source,
                method=method,
                idempotency_key=req.idempotency_key,
                refund_status="succeeded" if req.stripe_refund_id else "pending",
                stripe_refund_id=req.stripe_refund_id,
                refunded_at=at if req.stripe_refund_id else None,
                actor=req.actor,
            )
            .returning(*credit_notes.c)
        )
    ).one()
    issued = dict(row._mapping)
    await record_audit(
        conn,
        actor=req.actor,
        action="credit_note.issued",
        subject_type="invoice",
        subject_id=str(req.invoice_id),
        tenant_id=req.tenant_id,
        before={"left_to_credit": before},
        after={"left_to_credit": after, "credit_note": issued["number"], "amount": req.amount},
        details={"reason": req.reason, "source": req.source, "method": method},
    )
    return Issued(issued, True, invoice.stripe_invoice_id, invoice.subscription_id)


async def by_key(conn: AsyncConnection, idempotency_key: str) -> dict[str, Any] | None:
    """The tenant's credit note issued with this key (RLS scopes the read)."""
    row = (
        await conn.execute(
            select(credit_notes).where(credit_notes.c.idempotency_key == idempotency_key)
        )
    ).first()
    return dict(row._mapping) if row else None


async def get(conn: AsyncConnection, credit_note_id: UUID) -> dict[str, Any] | None:
    row = (
        await conn.execute(select(credit_notes).where(credit_notes.c.id == credit_note_id))
    ).first()
    return dict(row._mapping) if row else None


async def list_all(conn: AsyncConnection, invoice_id: UUID | None = None) -> list[dict[str, Any]]:
    """The tenant's credit notes (RLS scopes the read), newest first."""
    query = select(credit_notes).order_by(credit_notes.c.created_at.desc(), credit_notes.c.id)
    if invoice_id is not None:
        query = query.where(credit_notes.c.invoice_id == invoice_id)
    return [dict(r._mapping) for r in await conn.execute(query)]


async def known_refund(conn: AsyncConnection, stripe_refund_id: str) -> bool:
    found = await conn.scalar(
        select(func.count())
        .select_from(credit_notes)
        .where(credit_notes.c.stripe_refund_id == stripe_refund_id)
    )
    return bool(found)


async def credit_from_stripe(
    conn: AsyncConnection,
    *,
    tenant_id: UUID,
    invoice_id: UUID,
    stripe_credit_note_id: str,
    amount: int,
    actor: str,
    at: datetime,
) -> bool:
    """A credit note made in the Stripe dashboard on an open invoice (ADR 0020): recorded as
    the engine's (`source: stripe`, lowering the invoice's amount due), once per Stripe credit
    note; False when it is known already or the invoice is no longer open in the books."""
    known = await conn.scalar(
        select(func.count())
        .select_from(credit_notes)
        .where(credit_notes.c.stripe_credit_note_id == stripe_credit_note_id)
    )
    # Locked here (as `issue` locks it again): the invoice cannot be paid between this check
    # and the credit note.
    status = await conn.scalar(
        select(invoices.c.status).where(invoices.c.id == invoice_id).with_for_update()
    )
    if known or status not in OPEN_STATUSES:
        return False
    issued = await issue(
        conn,
        CreditNoteRequest(
            tenant_id=tenant_id,
            invoice_id=invoice_id,
            amount=amount,
            reason="credited in Stripe",
            idempotency_key=f"stripe:{stripe_credit_note_id}",
            actor=actor,
            source="stripe",
            method=REDUCE_AMOUNT_DUE,
        ),
        at,
    )
    await record_refund(
        conn,
        issued.row["id"],
        stripe_refund_id=None,
        status="succeeded",
        at=at,
        actor=actor,
        stripe_credit_note_id=stripe_credit_note_id,
    )
    return issued.created


async def record_refund(
    conn: AsyncConnection,
    credit_note_id: UUID,
    *,
    stripe_refund_id: str | None,
    status: str,
    at: datetime,
    actor: str,
    stripe_credit_note_id: str | None = None,
) -> bool:
    """What became of the credit note: the refund Stripe made, the credit the balance took
    (`stripe_refund_id` None), or the Stripe credit note that lowered an open invoice's amount
    due (which then goes down here, once); False when already recorded (a retry)."""
    old = (
        await conn.execute(
            select(
                credit_notes.c.tenant_id,
                credit_notes.c.invoice_id,
                credit_notes.c.refund_status,
                credit_notes.c.number,
                credit_notes.c.method,
                credit_notes.c.amount,
            )
            .where(credit_notes.c.id == credit_note_id)
            .with_for_update()
        )
    ).first()
    if old is None or old.refund_status == status:
        return False
    await conn.execute(
        update(credit_notes)
        .where(credit_notes.c.id == credit_note_id)
        .values(
            stripe_refund_id=stripe_refund_id,
            stripe_credit_note_id=stripe_credit_note_id,
            refund_status=status,
            refunded_at=at if status == "succeeded" else None,
            updated_at=func.now(),
        )
    )
    await record_audit(
        conn,
        actor=actor,
        action=_settled_action(old.method, stripe_refund_id, status),
        subject_type="credit_note",
        subject_id=str(credit_note_id),
        tenant_id=old.tenant_id,
        before={"refund_status": old.refund_status},
        after={
            "refund_status": status,
            "stripe_refund_id": stripe_refund_id,
            "stripe_credit_note_id": stripe_credit_note_id,
        },
    )
    if old.method == REDUCE_AMOUNT_DUE and status == "succeeded":
        await _lower_amount_due(conn, old.tenant_id, old.invoice_id, old.amount, old.number, actor)
    return True


_LOWER_AMOUNT_DUE = text(
    """
UPDATE invoices AS i SET amount_due = GREATEST(i.amount_due - :amount, 0), updated_at = now()
FROM (SELECT id, amount_due FROM invoices WHERE id = :invoice_id FOR UPDATE) AS before
WHERE i.id = before.id
RETURNING before.amount_due AS before, i.amount_due AS after
"""
)


async def _lower_amount_due(
    conn: AsyncConnection, tenant_id: UUID, invoice_id: UUID, amount: int, number: str, actor: str
) -> None:
    """The open invoice asks for `amount` less (in one statement, its before read under the
    lock the update takes)."""
    changed = (
        await conn.execute(_LOWER_AMOUNT_DUE, {"amount": amount, "invoice_id": invoice_id})
    ).one()
    await record_audit(
        conn,
        actor=actor,
        action="invoice.amount_due_lowered",
        subject_type="invoice",
        subject_id=str(invoice_id),
        tenant_id=tenant_id,
        before={"amount_due": changed.before},
        after={"amount_due": changed.after},
        details={"credit_note": number},
    )


def _settled_action(method: str, stripe_refund_id: str | None, status: str) -> str:
    """`credit_note.refund_succeeded` / `refund_failed` for the card, `credit_note.credit_*`
    for the balance (no Stripe refund), `credit_note.reduce_*` for an open invoice's amount
    due."""
    if method == REDUCE_AMOUNT_DUE:
        return f"credit_note.reduce_{status}"
    if stripe_refund_id is not None or status == "failed":
        return f"credit_note.refund_{status}"
    return f"credit_note.credit_{status}"
