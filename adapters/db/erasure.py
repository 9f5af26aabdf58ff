"""A tenant's erasure in Postgres (ADR 0018): what to erase in Stripe, revoking access, and
replacing personal data with tombstones while the books (invoices, their items, amounts,
numbers) and the audit trail stay. Every statement is idempotent, and runs in the tenant's
transaction (RLS), except the audit redaction, a function of its own."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import func, null, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import (
    api_keys,
    credit_notes,
    invoices,
    notification_deliveries,
    notification_endpoints,
    payment_methods,
    subscriptions,
    tenants,
    usage_events,
    webhook_events,
)

TOMBSTONE_URL = "https://erased.invalid/"


@dataclass(frozen=True)
class ErasureSubjects:
    name: str
    email: str | None
    stripe_customer_id: str | None
    payment_method_ids: list[str]
    live_subscription_ids: list[str]
    # Other personal values the audit details may quote: the tenant's metadata values (an
    # address, a contact) and its notification URLs.
    other_values: list[str]


async def subjects(conn: AsyncConnection, tenant_id: UUID) -> ErasureSubjects | None:
    tenant = (
        await conn.execute(
            select(
                tenants.c.name,
                tenants.c.email,
                tenants.c.stripe_customer_id,
                tenants.c.metadata,
                tenants.c.billing_details,
            ).where(tenants.c.id == tenant_id)
        )
    ).first()
    if tenant is None:
        return None
    cards = await conn.scalars(
        select(payment_methods.c.stripe_payment_method_id).where(
            payment_methods.c.tenant_id == tenant_id
        )
    )
    live = await conn.scalars(
        select(subscriptions.c.id).where(
            subscriptions.c.tenant_id == tenant_id, subscriptions.c.status != "canceled"
        )
    )
    urls = await conn.scalars(
        select(notification_endpoints.c.url).where(
            notification_endpoints.c.tenant_id == tenant_id,
            notification_endpoints.c.url != TOMBSTONE_URL,
        )
    )
    values = [v for v in (tenant.metadata or {}).values() if isinstance(v, str)]
    billing = tenant.billing_details or {}
    values += [v for v in billing.values() if isinstance(v, str)]
    values += [line for line in billing.get("address") or [] if isinstance(line, str)]
    return ErasureSubjects(
        tenant.name,
        tenant.email,
        tenant.stripe_customer_id,
        sorted(cards),
        sorted(str(s) for s in live),
        sorted({*values, *urls}),
    )


async def revoke_access(conn: AsyncConnection, tenant_id: UUID) -> tuple[int, int]:
    """(keys revoked, endpoints disabled) now."""
    keys = await conn.execute(
        update(api_keys)
        .where(api_keys.c.tenant_id == tenant_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=func.now(), updated_at=func.now())
    )
    endpoints = await conn.execute(
        update(notification_endpoints)
        .where(notification_endpoints.c.tenant_id == tenant_id, notification_endpoints.c.enabled)
        .values(enabled=False, updated_at=func.now())
    )
    return keys.rowcount, endpoints.rowcount


async def tombstone(conn: AsyncConnection, tenant_id: UUID, terms: Sequence[str] = ()) -> None:
    """Personal data out, books kept: names, emails, addresses and metadata values, card
    details, notification URLs and payloads, and the Stripe events' bodies."""
    short = str(tenant_id)[:8]
    await conn.execute(
        update(tenants)
        .where(tenants.c.id == tenant_id)
        .values(
            name=f"erased tenant {short}",
            email=None,
            stripe_customer_id=None,
            metadata={},
            billing_details={},
            erased_at=func.coalesce(tenants.c.erased_at, func.now()),
            updated_at=func.now(),
        )
    )
    await conn.execute(
        update(api_keys).where(api_keys.c.tenant_id == tenant_id).values(name="erased")
    )
    await conn.execute(
        update(notification_endpoints)
        .where(notification_endpoints.c.tenant_id == tenant_id)
        .values(url=TOMBSTONE_URL)
    )
    await conn.execute(
        update(notification_deliveries)
        .where(notification_deliveries.c.tenant_id == tenant_id)
        .values(payload={}, last_error=None)
    )
    await conn.execute(
        update(payment_methods)
        .where(payment_methods.c.tenant_id == tenant_id)
        .values(
            last4=None,
            exp_month=None,
            exp_year=None,
            is_default=False,
            detached_at=func.coalesce(payment_methods.c.detached_at, func.now()),
        )
    )
    await conn.execute(
        update(subscriptions).where(subscriptions.c.tenant_id == tenant_id).values(metadata={})
    )
    await conn.execute(
        update(invoices)
        .where(invoices.c.tenant_id == tenant_id)
        .values(metadata={}, hosted_invoice_url=None, invoice_pdf=None)
    )
    await conn.execute(
        update(usage_events).where(usage_events.c.tenant_id == tenant_id).values(metadata=null())
    )
    # A credit note's reason is the operator's words, which may name the person: each personal
    # value (as the audit redaction sees them) becomes `[erased]`; amounts and numbers stay.
    for term in (t for t in terms if t and len(t) >= 3):
        await conn.execute(
            update(credit_notes)
            .where(
                credit_notes.c.tenant_id == tenant_id, func.strpos(credit_notes.c.reason, term) > 0
            )
            .values(reason=func.replace(credit_notes.c.reason, term, "[erased]"))
        )
    # The tenant's Stripe events. (Events never resolved to a tenant are invisible here: RLS
    # keeps the scoped role to this tenant's rows, and no write here may reach further.)
    await conn.execute(
        update(webhook_events)
        .where(webhook_events.c.tenant_id == tenant_id)
        .values(
            payload=func.jsonb_build_object(
                "id", webhook_events.c.stripe_event_id, "type", webhook_events.c.type,
                "erased", True,
            ),
            last_error=None,
        )
    )  # fmt: skip


async def redact_audit(conn: AsyncConnection, tenant_id: UUID, terms: list[str], actor: str) -> int:
    """Replace `terms` in the tenant's audit details (the one function allowed to)."""
    changed = await conn.scalar(
        text("SELECT audit_log_redact(:tenant, :terms, :actor)"),
        {"tenant": tenant_id, "terms": terms, "actor": actor},
    )
    return int(changed or 0)


async def erased_before(conn: AsyncConnection, before: datetime) -> list[UUID]:
    """Tenants whose erasure is older than `before` (cross-tenant: the retention job)."""
    rows = await conn.execute(
        select(tenants.c.id)
        .where(tenants.c.erased_at.is_not(None), tenants.c.erased_at < before)
        .order_by(tenants.c.erased_at)
    )
    return [r[0] for r in rows]


async def purge_books(conn: AsyncConnection, tenant_id: UUID, before: datetime, actor: str) -> int:
    """Every row of a tenant erased before `before`, the tenant's own row and its audit rows
    included, by the one function allowed to (migration 0014), which records the purge; 0 when
    the tenant was not erased before `before` (or is gone already)."""
    purged = await conn.scalar(
        text("SELECT tenant_books_purge(:t, :before, :actor)"),
        {"t": tenant_id, "before": before, "actor": actor},
    )
    return int(purged or 0)
