"""Postgres side of billing: period usage, invoices and their items, payment attempts, the
subscription change history with its audit rows, payment methods (worker role: across tenants).

Every write is idempotent under activity retries: invoices by `billing_key`, changes by
`change_key`, attempts by their idempotency key, projections by `version`."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from uuid import UUID

from temporalio import activity

from activities.actors import system_actor, workflow_id
from activities.errors import domain_errors, foreign_row
from adapters import metrics
from adapters.db import invoices as invoices_repo
from adapters.db import payment_methods as payment_methods_repo
from adapters.db import subscriptions as subscription_repo
from adapters.db.session import Database
from billing.payments import CardDetails
from workflows.shared_io import InvoiceProjection, ProjectionResult
from workflows.subscription_io import (
    RecordChangeResult,
    RecordInvoiceInput,
    RecordInvoiceResult,
    RecordPaymentMethodInput,
    SubscriptionChange,
)


def attributed(change: SubscriptionChange, workflow_id: str | None) -> SubscriptionChange:
    """The actor as the audit trail names it (ADR 0019): a decision of the workflow itself is
    `system:{workflow id}`, one a Stripe event caused `stripe:{event id}`; a command keeps its
    caller (`api_key:{id}`)."""
    if change.actor == "system" and workflow_id:
        return replace(change, actor=f"system:{workflow_id}")
    if change.actor == "stripe" and change.details.get("event_id"):
        return replace(change, actor=f"stripe:{change.details['event_id']}")
    return change


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class BillingStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn(name="record_invoice")
    @domain_errors
    async def record_invoice(self, input: RecordInvoiceInput) -> RecordInvoiceResult:
        async with self._db.tenant_transaction(UUID(input.tenant_id)) as conn:
            created = await invoices_repo.insert_invoice(conn, input, system_actor())
            # Billed already (a retry after the commit): the period is never billed twice.
            # RLS narrows this read to the tenant: a key another tenant holds is not "ours".
            existing = (
                None
                if created
                else await invoices_repo.invoice_for_billing_key(conn, input.billing_key)
            )
        if created:  # counted after the commit
            metrics.INVOICES_ISSUED.labels(input.currency, input.billing_reason).inc()
            metrics.INVOICE_AMOUNT.labels(input.currency, input.billing_reason).inc(input.total)
            return RecordInvoiceResult(input.invoice_id, created=True)
        if existing is None:
            raise foreign_row("invoice billing key", input.billing_key)
        return RecordInvoiceResult(str(existing), created=False)

    @activity.defn(name="project_invoice")
    @domain_errors
    async def project_invoice(self, input: InvoiceProjection) -> ProjectionResult:
        tenant_id = await self._invoice_tenant(input)
        if tenant_id is None:
            return ProjectionResult(applied=False)
        invoice_id = UUID(input.invoice_id)
        async with self._db.tenant_transaction(tenant_id) as conn:
            transition = await invoices_repo.project_invoice(
                conn,
                invoice_id,
                version=input.version,
                status=input.status,
                amount_paid=input.amount_paid,
                attempt_count=input.attempt_count,
                paid_at=input.paid_at,
                stripe_invoice_id=input.stripe_invoice_id,
                hosted_invoice_url=input.hosted_invoice_url,
                invoice_pdf=input.invoice_pdf,
            )
            if input.attempt_outcome and input.attempt_count:
                await invoices_repo.record_attempt(
                    conn,
                    tenant_id=tenant_id,
                    invoice_id=invoice_id,
                    attempt=input.attempt_count,
                    idempotency_key=f"pay:{input.invoice_id}:{input.attempt_count}",
                    attempted_at=input.attempted_at,
                    outcome=input.attempt_outcome,
                    decline_code=input.decline_code,
                    failure_message=input.failure_message,
                )
            applied = transition is not None
            if transition is not None:
                # Finalised: numbered in the same transaction (ADR 0015).
                number = (
                    await invoices_repo.assign_number(conn, invoice_id)
                    if input.status != "draft"
                    else None
                )
                await invoices_repo.audit_transition(
                    conn,
                    tenant_id=tenant_id,
                    invoice_id=invoice_id,
                    actor=system_actor(),
                    transition=transition,
                    number=number,
                    request_id=input.request_id,
                )
        if applied:  # a version writes once, so a retried activity does not count again
            metrics.count_invoice_outcome("subscription", input.status)
            if input.attempt_outcome and input.attempt_outcome not in ("paid", "already_paid"):
                metrics.INVOICE_OUTCOMES.labels("subscription", "payment_failed").inc()
        return ProjectionResult(applied=applied)

    async def _invoice_tenant(self, input: InvoiceProjection) -> UUID | None:
        """The projection's tenant. Histories written before the field existed send none: the
        invoice row (an engine-made id) then says whose it is."""
        if input.tenant_id is not None:
            return UUID(input.tenant_id)
        async with self._db.transaction() as conn:  # cross-tenant: a read by primary key
            return await invoices_repo.tenant_of_invoice(conn, UUID(input.invoice_id))

    @activity.defn(name="record_subscription_change")
    @domain_errors
    async def record_subscription_change(self, input: SubscriptionChange) -> RecordChangeResult:
        """One history row and one audit row per change, both or neither (same transaction)."""
        input = attributed(input, workflow_id())
        async with self._db.tenant_transaction(UUID(input.tenant_id)) as conn:
            recorded = await subscription_repo.record_change(conn, input)
        if recorded:  # once per change key, after the commit
            metrics.SUBSCRIPTION_CHANGES.labels(input.kind).inc()
        return RecordChangeResult(recorded=recorded)

    @activity.defn(name="record_payment_method")
    @domain_errors
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
