"""Activities of the `stripe_event` workflow: resolve what an inbox event concerns, re-read the
invoice from Stripe, update local projections, record the outcome on the inbox row."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import domain_errors
from adapters import metrics
from adapters.db import credit_notes as credit_notes_repo
from adapters.db import disputes as disputes_repo
from adapters.db import grace as grace_repo
from adapters.db import invoices as invoices_repo
from adapters.db import payment_methods as payment_methods_repo
from adapters.db import subscriptions as subscription_repo
from adapters.db import tenants as tenant_repo
from adapters.db import webhook_inbox as inbox
from adapters.db.audit import record_audit
from adapters.db.notifications import enqueue_notification
from adapters.db.session import Connection, Database
from billing.disputes import OPEN, DisputePolicy, dispute_status, suspends
from billing.notifications import INVOICE_DISPUTE_CLOSED, INVOICE_DISPUTED
from billing.payments import StripeGateway
from billing.stripe_events import (
    CHARGE_REFUNDED,
    CREDIT_NOTE_CREATED,
    CUSTOMER_DELETED,
    DISPUTE_EVENTS,
    PAYMENT_METHOD_EVENTS,
    EventRefs,
    charge_refunds,
    dispute_facts,
    event_object,
    event_refs,
    handling_for,
    metadata_uuid,
    prepayment_credit_note,
)
from workflows.shared_io import RereadInvoiceInput, StripeInvoiceRead
from workflows.stripe_event_io import (
    ApplyDisputeInput,
    DisputeApplied,
    FindPaymentInvoiceInput,
    MarkStripeEventInput,
    MarkStripeEventResult,
    PaymentInvoice,
    ProjectStripeEventInput,
    ProjectStripeEventResult,
    ResolvedStripeEvent,
    ResolveStripeEventInput,
)

log = logging.getLogger(__name__)


async def _load(conn: Connection, event_id: str) -> inbox.InboxEvent:
    event = await inbox.get_event(conn, event_id)
    if event is None:
        raise ApplicationError(f"event {event_id} is not in the inbox", type="billing_error")
    return event


class StripeEventStore:
    """Database side (main task queue). `dispute_policy`: what an open dispute does to its
    tenant (ADR 0021)."""

    def __init__(self, db: Database, dispute_policy: DisputePolicy = "none") -> None:
        self._db = db
        self._dispute_policy = dispute_policy

    @activity.defn(name="resolve_stripe_event")
    @domain_errors
    async def resolve_stripe_event(self, input: ResolveStripeEventInput) -> ResolvedStripeEvent:
        async with self._db.transaction() as conn:
            event = await _load(conn, input.event_id)
            # The run has started: the endpoint leaves this to the workflow, saving a
            # transaction per accepted webhook.
            await inbox.mark_dispatched(conn, event.stripe_event_id)
            obj = event_object(event.payload)
            refs = event_refs(event.type, obj)
            dispute = dispute_facts(obj) if event.type in DISPUTE_EVENTS else None
            tenant_id, subscription_id, invoice_id = await _locate(conn, refs)
            if tenant_id is not None and event.tenant_id is None:
                await inbox.set_tenant(conn, event.stripe_event_id, tenant_id)
        return ResolvedStripeEvent(
            event_id=event.stripe_event_id,
            event_type=event.type,
            handling=handling_for(event.type).value,
            stripe_object_id=refs.object_id,
            tenant_id=str(tenant_id) if tenant_id else None,
            subscription_id=str(subscription_id) if subscription_id else None,
            invoice_id=str(invoice_id) if invoice_id else None,
            stripe_invoice_id=refs.stripe_invoice_id,
            stripe_customer_id=refs.stripe_customer_id,
            stripe_payment_method_id=refs.stripe_payment_method_id,
            invoice_status=refs.invoice_status,
            amount_paid=refs.amount_paid,
            hosted_invoice_url=refs.hosted_invoice_url,
            failure_message=refs.failure_message,
            payment_intent_id=dispute.payment_intent_id if dispute else None,
            charge_id=dispute.charge_id if dispute else None,
        )

    @activity.defn(name="apply_dispute")
    @domain_errors
    async def apply_dispute(self, input: ApplyDisputeInput) -> DisputeApplied:
        """Mark the disputed invoice (open, won, lost), notify the tenant's endpoints, apply the
        policy to the tenant, and audit it, in one transaction; a repeated event changes
        nothing (ADR 0021)."""
        async with self._db.transaction() as conn:  # the inbox row has no tenant yet
            event = await _load(conn, input.event_id)
            found = await invoices_repo.find_by_stripe_invoice(conn, input.stripe_invoice_id)
        facts = dispute_facts(event_object(event.payload))
        if facts is None:
            return DisputeApplied("ignored", "not a usable dispute object")
        if found is None:
            return DisputeApplied("ignored", "no engine invoice concerns this dispute")
        invoice_id, tenant_id, _ = found
        status = dispute_status(facts.status)
        actor = f"stripe:{event.stripe_event_id}"
        async with self._db.tenant_transaction(tenant_id) as conn:
            await inbox.set_tenant(conn, event.stripe_event_id, tenant_id)
            changed = await disputes_repo.set_dispute(conn, invoice_id, facts.dispute_id, status)
            if changed is None:
                return DisputeApplied("processed", f"dispute already {status}")
            before, after = changed
            await record_audit(
                conn, actor=actor, action=f"invoice.dispute_{status}", subject_type="invoice",
                subject_id=str(invoice_id), tenant_id=tenant_id, before=before, after=after,
                details={"reason": facts.reason, "amount": facts.amount,
                         "stripe_status": facts.status},
            )  # fmt: skip
            notice = INVOICE_DISPUTED if status == OPEN else INVOICE_DISPUTE_CLOSED
            await enqueue_notification(
                conn, tenant_id=tenant_id, event_type=notice,
                message_id=f"{notice}:{facts.dispute_id}:{status}",
                payload={"invoice_id": str(invoice_id), "dispute_id": facts.dispute_id,
                         "status": status, "amount": facts.amount, "reason": facts.reason},
            )  # fmt: skip
            if suspends(self._dispute_policy, status):
                moved = await grace_repo.suspend_tenant(conn, tenant_id, "dispute")
                access = ("active", "suspended")
            else:
                moved = await disputes_repo.lift_dispute_suspension(conn, tenant_id)
                access = ("suspended", "active")
            if moved:
                await record_audit(
                    conn, actor=actor,
                    action="tenant.suspended" if access[1] == "suspended" else "tenant.reactivated",
                    subject_type="tenant", subject_id=str(tenant_id), tenant_id=tenant_id,
                    before={"access_status": access[0]},
                    after={"access_status": access[1], "reason": "dispute"},
                )  # fmt: skip
        metrics.DISPUTES.labels(status).inc()
        log.warning(
            "dispute %s on invoice %s of tenant %s is %s (%s)",
            facts.dispute_id, invoice_id, tenant_id, status, facts.reason,
        )  # fmt: skip
        return DisputeApplied("processed", f"dispute {status}")

    @activity.defn(name="project_stripe_event")
    @domain_errors
    async def project_stripe_event(
        self, input: ProjectStripeEventInput
    ) -> ProjectStripeEventResult:
        """Local projections the event carries data for; idempotent (last write of the same facts
        wins, and a re-read is unnecessary: brand/last4/expiry only ever describe one card)."""
        tenant_id = metadata_uuid(input.tenant_id)
        if tenant_id is None:
            return ProjectStripeEventResult(applied=False)
        async with self._db.transaction() as conn:  # the inbox row has no tenant yet
            event = await _load(conn, input.event_id)
        obj = event_object(event.payload)
        refs = event_refs(event.type, obj)
        # The writes run as the scoped role for the resolved tenant: RLS keeps them on its rows.
        async with self._db.tenant_transaction(tenant_id) as conn:
            if event.type in PAYMENT_METHOD_EVENTS and refs.object_id and refs.card:
                before = payment_methods_repo.card_snapshot(
                    await payment_methods_repo.get_card(conn, refs.object_id)
                )
                await payment_methods_repo.project_card(conn, tenant_id, refs.object_id, refs.card)
                after = payment_methods_repo.card_snapshot(
                    await payment_methods_repo.get_card(conn, refs.object_id)
                )
                if after != before:
                    await record_audit(
                        conn,
                        actor=f"stripe:{event.stripe_event_id}",
                        action="payment_method.updated",
                        subject_type="payment_method",
                        subject_id=refs.object_id,
                        tenant_id=tenant_id,
                        before=before,
                        after=after,
                    )
                return ProjectStripeEventResult(applied=True)
            if event.type == CHARGE_REFUNDED:
                created = await _credit_dashboard_refunds(conn, tenant_id, event, obj, refs)
                return ProjectStripeEventResult(applied=created > 0)
            if event.type == CREDIT_NOTE_CREATED:
                credited = await _credit_dashboard_credit_note(conn, tenant_id, event, obj)
                return ProjectStripeEventResult(applied=credited)
            if event.type == CUSTOMER_DELETED and refs.object_id:
                cleared = await tenant_repo.clear_stripe_customer(conn, tenant_id, refs.object_id)
                if cleared:
                    await record_audit(
                        conn,
                        actor=f"stripe:{event.stripe_event_id}",
                        action="tenant.stripe_customer_deleted",
                        subject_type="tenant",
                        subject_id=str(tenant_id),
                        tenant_id=tenant_id,
                        before={"stripe_customer_id": refs.object_id},
                        after={"stripe_customer_id": None},
                    )
                return ProjectStripeEventResult(applied=cleared)
        return ProjectStripeEventResult(applied=False)

    @activity.defn(name="mark_stripe_event")
    @domain_errors
    async def mark_stripe_event(self, input: MarkStripeEventInput) -> MarkStripeEventResult:
        async with self._db.transaction() as conn:
            event_type = await inbox.record_outcome(
                conn,
                input.event_id,
                status=input.status,
                attempts=input.attempts,
                error=input.error,
            )
        if event_type is not None:
            metrics.WEBHOOKS_PROCESSED.labels(event_type, input.status or "attempt_failed").inc()
        return MarkStripeEventResult(updated=event_type is not None)


async def _locate(conn: Connection, refs: EventRefs) -> tuple[UUID | None, ...]:
    """(tenant, subscription, invoice): the engine's metadata first, then lookups by Stripe id."""
    tenant_id = metadata_uuid(refs.tenant_id)
    subscription_id = metadata_uuid(refs.subscription_id)
    invoice_id = metadata_uuid(refs.invoice_id)
    if invoice_id is None and refs.stripe_invoice_id is not None:
        found = await invoices_repo.find_by_stripe_invoice(conn, refs.stripe_invoice_id)
        if found is not None:
            invoice_id = found[0]
            tenant_id = tenant_id or found[1]
            subscription_id = subscription_id or found[2]
    if tenant_id is None and refs.stripe_customer_id is not None:
        tenant_id = await tenant_repo.tenant_for_stripe_customer(conn, refs.stripe_customer_id)
    if tenant_id is not None and await tenant_repo.get_tenant(conn, tenant_id) is None:
        # Metadata may name ids that do not exist here (another environment's objects).
        return None, None, None
    if subscription_id is None and tenant_id is not None:
        subscription_id = await subscription_repo.latest_subscription_id(conn, tenant_id)
    return tenant_id, subscription_id, invoice_id


class StripeEventReads:
    """Stripe side (rate-limited Stripe task queue)."""

    def __init__(self, gateway: StripeGateway) -> None:
        self._gateway = gateway

    @activity.defn(name="find_payment_invoice")
    @domain_errors
    async def find_payment_invoice(self, input: FindPaymentInvoiceInput) -> PaymentInvoice:
        """The Stripe invoice a disputed payment paid (a dispute names only the payment)."""
        return PaymentInvoice(
            await self._gateway.find_invoice_for_payment(input.payment_intent_id, input.charge_id)
        )

    @activity.defn(name="reread_stripe_invoice")
    @domain_errors
    async def reread_stripe_invoice(self, input: RereadInvoiceInput) -> StripeInvoiceRead:
        invoice = await self._gateway.retrieve_invoice(input.stripe_invoice_id)
        return StripeInvoiceRead(
            stripe_invoice_id=invoice.id,
            status=invoice.status,
            amount_due=invoice.amount_due,
            amount_paid=invoice.amount_paid,
            hosted_invoice_url=invoice.hosted_invoice_url,
            metadata=dict(invoice.metadata),
        )


async def _credit_dashboard_credit_note(
    conn: Any, tenant_id: UUID, event: Any, obj: Mapping[str, Any]
) -> bool:
    """The engine's credit note for a Stripe credit note made in the dashboard on an open
    invoice: the invoice asks for that much less, once per Stripe credit note (ADR 0020). The
    engine's own carry their credit note's id and are skipped; one on a paid invoice gives
    money back as a refund, which `charge.refunded` records."""
    note = prepayment_credit_note(obj)
    if note is None or note.credit_note_id is not None:
        return False
    found = await invoices_repo.find_by_stripe_invoice(conn, note.stripe_invoice_id)
    if found is None:  # not an engine invoice of this tenant
        return False
    return await credit_notes_repo.credit_from_stripe(
        conn,
        tenant_id=tenant_id,
        invoice_id=found[0],
        stripe_credit_note_id=note.id,
        amount=note.amount,
        actor=f"stripe:{event.stripe_event_id}",
        at=datetime.now(UTC),
    )


async def _credit_dashboard_refunds(
    conn: Any, tenant_id: UUID, event: Any, obj: Mapping[str, Any], refs: Any
) -> int:
    """A credit note for each refund on the charge the engine did not make itself (one made in
    the Stripe dashboard), once per Stripe refund id (ADR 0020). The engine's own refunds carry
    their credit note's id and are skipped."""
    if refs.stripe_invoice_id is None:
        return 0
    found = await invoices_repo.find_by_stripe_invoice(conn, refs.stripe_invoice_id)
    if found is None:  # not an engine invoice of this tenant
        return 0
    created = 0
    for refund in charge_refunds(obj):
        if refund.credit_note_id is not None or await credit_notes_repo.known_refund(
            conn, refund.id
        ):
            continue
        issued = await credit_notes_repo.issue(
            conn,
            credit_notes_repo.CreditNoteRequest(
                tenant_id=tenant_id,
                invoice_id=found[0],
                amount=refund.amount,
                reason="refunded in Stripe",
                idempotency_key=f"stripe:{refund.id}",
                actor=f"stripe:{event.stripe_event_id}",
                source="stripe",
                stripe_refund_id=refund.id,
            ),
            datetime.now(UTC),
        )
        created += issued.created
    return created
