"""Stored cards: brand, last4 and expiry only, one default per tenant. Used by the worker's
`record_payment_method` activity and by the API when a card is added before any subscription;
both call it inside a tenant transaction, so RLS keeps the write on the caller's rows."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import payment_methods
from billing.payments import CardDetails
from billing.stripe_events import CardFacts


async def record_default_card(conn: AsyncConnection, tenant_id: UUID, card: CardDetails) -> None:
    """Make `card` the tenant's default (inserted, or re-attached if it was detached)."""
    await conn.execute(
        update(payment_methods)
        .where(
            payment_methods.c.tenant_id == tenant_id,
            payment_methods.c.stripe_payment_method_id != card.payment_method_id,
        )
        .values(is_default=False, updated_at=func.now())
    )
    stmt = insert(payment_methods).values(
        tenant_id=tenant_id,
        stripe_payment_method_id=card.payment_method_id,
        brand=card.brand,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        is_default=True,
    )
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["tenant_id", "stripe_payment_method_id"],
            set_={"is_default": True, "detached_at": None, "updated_at": func.now()},
        )
    )


async def project_card(
    conn: AsyncConnection, tenant_id: UUID, payment_method_id: str, card: CardFacts
) -> None:
    """Brand, last4 and expiry from a Stripe event (the last write of the same facts wins);
    the row is the tenant's own, keyed per tenant."""
    values: dict[str, Any] = {
        "brand": card.brand,
        "last4": card.last4,
        "exp_month": card.exp_month,
        "exp_year": card.exp_year,
    }
    await conn.execute(
        insert(payment_methods)
        .values(tenant_id=tenant_id, stripe_payment_method_id=payment_method_id, **values)
        .on_conflict_do_update(
            index_elements=["tenant_id", "stripe_payment_method_id"],
            set_={**values, "updated_at": func.now()},
        )
    )


CARD_FIELDS = ("stripe_payment_method_id", "brand", "last4", "exp_month", "exp_year")


def card_snapshot(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A card as the audit trail records it (no personal data beyond brand, last4, expiry)."""
    if row is None:
        return None
    return {k: row[k] for k in CARD_FIELDS}


async def default_card(conn: AsyncConnection) -> dict[str, Any] | None:
    """The current tenant's default card (RLS scopes the read), or None."""
    row = (
        await conn.execute(
            select(payment_methods).where(
                payment_methods.c.is_default.is_(True), payment_methods.c.detached_at.is_(None)
            )
        )
    ).first()
    return dict(row._mapping) if row else None


async def get_card(conn: AsyncConnection, payment_method_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            select(payment_methods).where(
                payment_methods.c.stripe_payment_method_id == payment_method_id
            )
        )
    ).first()
    return dict(row._mapping) if row else None
