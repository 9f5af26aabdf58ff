"""Activities of the dunning workflow: one side effect each.

`DunningStripeActivities` run on the rate-limited Stripe task queue; `DunningStore` writes
Postgres as the worker role. Both are safe to retry: Stripe writes carry the workflow's
deterministic idempotency keys, attempt rows are inserted ON CONFLICT DO NOTHING, notifications
have deterministic message ids, and the invoice projection is guarded by its version.
"""

from __future__ import annotations

from uuid import UUID

from temporalio import activity

from activities.actors import system_actor
from activities.errors import domain_errors
from adapters import metrics
from adapters.db import invoices as invoices_repo
from adapters.db.audit import record_audit
from adapters.db.notifications import enqueue_notification
from adapters.db.session import Connection, Database
from billing.dunning import final_action_key, parse_final_action
from billing.payments import StripeGateway, StripeInvalidRequest, StripeInvoice
from workflows.dunning_io import (
    FinalActionInput,
    FinalActionResult,
    RecordAttemptInput,
    RecordAttemptResult,
    RetryPaymentInput,
    RetryPaymentResult,
)
from workflows.shared_io import (
    DunningNotification,
    InvoiceProjection,
    ProjectionResult,
    RereadInvoiceInput,
    StripeInvoiceRead,
)


def _snapshot(invoice: StripeInvoice) -> StripeInvoiceRead:
    return StripeInvoiceRead(
        stripe_invoice_id=invoice.id,
        status=invoice.status,
        amount_due=invoice.amount_due,
        amount_paid=invoice.amount_paid,
        hosted_invoice_url=invoice.hosted_invoice_url,
    )


class DunningStripeActivities:
    def __init__(self, gateway: StripeGateway) -> None:
        self._gateway = gateway

    @activity.defn(name="reread_dunning_invoice")
    @domain_errors
    async def reread_dunning_invoice(self, input: RereadInvoiceInput) -> StripeInvoiceRead:
        return _snapshot(await self._gateway.retrieve_invoice(input.stripe_invoice_id))

    @activity.defn(name="retry_invoice_payment")
    @domain_errors
    async def retry_invoice_payment(self, input: RetryPaymentInput) -> RetryPaymentResult:
        outcome = await self._gateway.pay_invoice(
            input.stripe_invoice_id, idempotency_key=input.idempotency_key
        )
        # A decline is data: the workflow records it and waits for the next step.
        metrics.PAYMENT_ATTEMPTS.labels(
            "dunning",
            "paid"
            if outcome.succeeded
            else "requires_action"
            if outcome.requires_action
            else "declined",
        ).inc()
        return RetryPaymentResult(
            succeeded=outcome.succeeded,
            requires_action=outcome.requires_action,
            decline_code=outcome.decline_code,
            failure_message=outcome.failure_message,
            invoice=_snapshot(outcome.invoice),
        )

    @activity.defn(name="close_unrecovered_invoice")
    @domain_errors
    async def close_unrecovered_invoice(self, input: FinalActionInput) -> FinalActionResult:
        action = parse_final_action(input.action)
        key = final_action_key(input.invoice_id, action)
        try:
            if action == "void":
                invoice = await self._gateway.void_invoice(input.stripe_invoice_id, key)
            else:
                invoice = await self._gateway.mark_uncollectible(input.stripe_invoice_id, key)
        except StripeInvalidRequest:
            # Stripe refuses to close a paid invoice: if it was paid since the last attempt
            # that is the answer, not an error.
            current = await self._gateway.retrieve_invoice(input.stripe_invoice_id)
            if current.status != "paid":
                raise
            invoice = current
        return FinalActionResult(_snapshot(invoice))


async def _enqueue_all(
    conn: Connection, tenant_id: UUID, notifications: list[DunningNotification]
) -> None:
    for note in notifications:
        await enqueue_notification(
            conn,
            tenant_id=tenant_id,
            event_type=note.event_type,
            message_id=note.message_id,
            payload=note.payload,
        )


class DunningStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn(name="record_dunning_attempt")
    @domain_errors
    async def record_dunning_attempt(self, input: RecordAttemptInput) -> RecordAttemptResult:
        """Record one attempt and queue its notifications in one transaction: a retried
        activity records once and notifies once (both writes are keyed)."""
        tenant_id = UUID(input.tenant_id)
        async with self._db.tenant_transaction(tenant_id) as conn:
            recorded = await invoices_repo.record_attempt(
                conn,
                tenant_id=tenant_id,
                invoice_id=UUID(input.invoice_id),
                attempt=input.attempt,
                idempotency_key=input.idempotency_key,
                attempted_at=input.attempted_at,
                outcome=input.outcome,
                decline_code=input.decline_code,
                failure_message=input.failure_message,
            )
            await _enqueue_all(conn, tenant_id, input.notifications)
            if recorded:
                await record_audit(
                    conn,
                    actor=system_actor(),
                    action="dunning.attempted",
                    subject_type="invoice",
                    subject_id=input.invoice_id,
                    tenant_id=tenant_id,
                    before={"attempts": input.attempt - 1},
                    after={"attempts": input.attempt, "outcome": input.outcome},
                    details={"cause": input.cause, "decline_code": input.decline_code},
                )
        if recorded:  # counted once per attempt, after the commit
            metrics.DUNNING_ATTEMPTS.labels(input.cause or "unknown", input.outcome).inc()
        return RecordAttemptResult(recorded=recorded)

    @activity.defn(name="project_dunning_invoice")
    @domain_errors
    async def project_dunning_invoice(self, input: InvoiceProjection) -> ProjectionResult:
        """Write dunning's view of the invoice; an older version never overwrites a newer one
        (a retried activity can land after a later one). Notifications ride along only when
        the write applies, so a stale retry does not announce a stale state."""
        # Dunning has always sent its tenant (the field is optional for the subscription's
        # older histories only).
        assert input.tenant_id is not None, "a dunning projection names its tenant"
        tenant_id = UUID(input.tenant_id)
        async with self._db.tenant_transaction(tenant_id) as conn:
            transition = await invoices_repo.project_dunning_view(
                conn,
                UUID(input.invoice_id),
                version=input.version,
                status=input.status,
                amount_paid=input.amount_paid,
                attempt_count=input.attempt_count,
                paid_at=input.paid_at,
            )
            applied = transition is not None
            if transition is not None:
                await _enqueue_all(conn, tenant_id, input.notifications)
                await invoices_repo.audit_transition(
                    conn,
                    tenant_id=tenant_id,
                    invoice_id=UUID(input.invoice_id),
                    actor=system_actor(),
                    transition=transition,
                )
        if applied:  # a version writes once, so a retried activity does not count again
            metrics.count_invoice_outcome("dunning", input.status)
            if input.recovered_by:
                metrics.DUNNING_RECOVERIES.labels(
                    metrics.attempt_label(input.attempt_count), input.recovered_by
                ).inc()
        return ProjectionResult(applied=applied)
