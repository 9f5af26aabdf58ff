"""Postgres side of billing: period usage, invoices and their items, payment attempts, the
subscription change history with its audit rows, payment methods (worker role: across tenants).

Every write is idempotent under activity retries: invoices by `billing_key`, changes by
`change_key`, attempts by their idempotency key, projections by `version`."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity

from activities.errors import foreign_row
from adapters.db import payment_methods as payment_methods_repo
from adapters.db.session import Database
from adapters.db.tables import (
    audit_log,
    dunning_attempts,
    invoice_items,
    invoices,
    subscription_changes,
)
from billing.payments import CardDetails
from workflows.io import (
    InvoiceProjection,
    ProjectionResult,
    RecordChangeResult,
    RecordInvoiceInput,
    RecordInvoiceResult,
    RecordPaymentMethodInput,
    SubscriptionChange,
)


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class BillingStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn(name="record_invoice")
    async def record_invoice(self, input: RecordInvoiceInput) -> RecordInvoiceResult:
        async with self._db.tenant_transaction(UUID(input.tenant_id)) as conn:
            inserted = await conn.execute(
                insert(invoices)
                .values(
                    id=UUID(input.invoice_id),
                    tenant_id=UUID(input.tenant_id),
                    subscription_id=UUID(input.subscription_id),
                    status="draft",
                    billing_reason=input.billing_reason,
                    billing_key=input.billing_key,
                    currency=input.currency,
                    subtotal=input.subtotal,
                    total=input.total,
                    amount_due=input.total,
                    period_start=_ts(input.period_start),
                    period_end=_ts(input.period_end),
                    version=input.version,
                )
                .on_conflict_do_nothing(index_elements=["billing_key"])
                .returning(invoices.c.id)
            )
            if inserted.first() is None:
                # Billed already (a retry after the commit): the period is never billed twice.
                # RLS narrows this read to the tenant: a key another tenant holds is not "ours".
                existing = await conn.scalar(
                    select(invoices.c.id).where(invoices.c.billing_key == input.billing_key)
                )
                if existing is None:
                    raise foreign_row("invoice billing key", input.billing_key)
                return RecordInvoiceResult(str(existing), created=False)
            await conn.execute(
                invoice_items.insert(),
                [
                    {
                        "tenant_id": UUID(input.tenant_id),
                        "invoice_id": UUID(input.invoice_id),
                        "position": position,
                        "kind": line.kind,
                        "description": line.description,
                        "metric": line.metric,
                        "quantity": line.quantity,
                        "amount": line.amount,
                        "currency": input.currency,
                        "period_start": _ts(line.period_start),
                        "period_end": _ts(line.period_end),
                    }
                    for position, line in enumerate(input.lines)
                ],
            )
        return RecordInvoiceResult(input.invoice_id, created=True)

    @activity.defn(name="project_invoice")
    async def project_invoice(self, input: InvoiceProjection) -> ProjectionResult:
        tenant_id = await self._invoice_tenant(input)
        if tenant_id is None:
            return ProjectionResult(applied=False)
        async with self._db.tenant_transaction(tenant_id) as conn:
            result = await conn.execute(
                update(invoices)
                .where(invoices.c.id == UUID(input.invoice_id), invoices.c.version < input.version)
                .values(
                    version=input.version,
                    status=input.status,
                    amount_paid=input.amount_paid,
                    stripe_invoice_id=input.stripe_invoice_id,
                    hosted_invoice_url=input.hosted_invoice_url,
                    invoice_pdf=input.invoice_pdf,
                    attempt_count=func.greatest(invoices.c.attempt_count, input.attempt_count),
                    paid_at=_ts(input.paid_at),
                    updated_at=func.now(),
                )
            )
            if input.attempt_outcome and input.attempt_count:
                await conn.execute(
                    insert(dunning_attempts)
                    .values(
                        tenant_id=tenant_id,
                        invoice_id=UUID(input.invoice_id),
                        attempt=input.attempt_count,
                        idempotency_key=f"pay:{input.invoice_id}:{input.attempt_count}",
                        attempted_at=_ts(input.attempted_at),
                        outcome=input.attempt_outcome,
                        decline_code=input.decline_code,
                        failure_message=input.failure_message,
                    )
                    .on_conflict_do_nothing(index_elements=["idempotency_key"])
                )
        return ProjectionResult(applied=result.rowcount == 1)

    async def _invoice_tenant(self, input: InvoiceProjection) -> UUID | None:
        """The projection's tenant. Histories written before the field existed send none: the
        invoice row (an engine-made id) then says whose it is."""
        if input.tenant_id is not None:
            return UUID(input.tenant_id)
        async with self._db.transaction() as conn:  # cross-tenant: a read by primary key
            tenant_id: UUID | None = await conn.scalar(
                select(invoices.c.tenant_id).where(invoices.c.id == UUID(input.invoice_id))
            )
        return tenant_id

    @activity.defn(name="record_subscription_change")
    async def record_subscription_change(self, input: SubscriptionChange) -> RecordChangeResult:
        """One history row and one audit row per change, both or neither (same transaction)."""
        async with self._db.tenant_transaction(UUID(input.tenant_id)) as conn:
            inserted = await conn.execute(
                insert(subscription_changes)
                .values(
                    tenant_id=UUID(input.tenant_id),
                    subscription_id=UUID(input.subscription_id),
                    kind=input.kind,
                    from_status=input.from_status,
                    to_status=input.to_status,
                    from_plan_code=input.from_plan_code,
                    to_plan_code=input.to_plan_code,
                    effective_at=_ts(input.effective_at),
                    actor=input.actor,
                    change_key=input.change_key,
                    details=input.details,
                )
                .on_conflict_do_nothing(index_elements=["change_key"])
                .returning(subscription_changes.c.id)
            )
            if inserted.first() is None:
                return RecordChangeResult(recorded=False)
            await conn.execute(
                audit_log.insert().values(
                    tenant_id=UUID(input.tenant_id),
                    actor=input.actor,
                    action=f"subscription.{input.kind}",
                    subject_type="subscription",
                    subject_id=input.subscription_id,
                    details={
                        "from_status": input.from_status,
                        "to_status": input.to_status,
                        "from_plan": input.from_plan_code,
                        "to_plan": input.to_plan_code,
                        "effective_at": input.effective_at,
                        **input.details,
                    },
                )
            )
        return RecordChangeResult(recorded=True)

    @activity.defn(name="record_payment_method")
    async def record_payment_method(self, input: RecordPaymentMethodInput) -> RecordChangeResult:
        """Store brand, last4 and expiry only, and make this card the tenant's default."""
        card = input.card
        async with self._db.tenant_transaction(UUID(input.tenant_id)) as conn:
            await payment_methods_repo.record_default_card(
                conn,
                UUID(input.tenant_id),
                CardDetails(
                    card.payment_method_id, card.brand, card.last4, card.exp_month, card.exp_year
                ),
            )
        return RecordChangeResult(recorded=True)
