"""A credit note's Stripe side (ADR 0020), on the rate-limited Stripe queue: its refund
(`credit_note_refund`) or the Stripe credit note that lowers an open invoice's amount due
(`credit_note_open_invoice`); and what became of it, recorded on the credit note."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from temporalio import activity

from activities.errors import domain_errors
from adapters.db import credit_notes as repo
from adapters.db.session import Database
from billing.payments import StripeGateway
from workflows.refund_io import (
    OpenInvoiceCredited,
    OpenInvoiceCreditRequest,
    RecordRefundInput,
    RefundMade,
    RefundRequest,
)
from workflows.shared_io import StripeInvoiceRead


def refund_key(credit_note_id: str) -> str:
    return f"refund:{credit_note_id}"


def credit_note_key(credit_note_id: str) -> str:
    return f"credit-note:{credit_note_id}"


class RefundStripe:
    def __init__(self, gateway: StripeGateway) -> None:
        self._gateway = gateway

    @activity.defn(name="refund_credit_note")
    @domain_errors
    async def refund_credit_note(self, input: RefundRequest) -> RefundMade:
        """One refund per credit note, whatever the retries: the key is the credit note's."""
        refund = await self._gateway.refund_invoice_payment(
            input.stripe_invoice_id,
            input.amount,
            {"credit_note_id": input.credit_note_id, "tenant_id": input.tenant_id},
            idempotency_key=refund_key(input.credit_note_id),
        )
        return RefundMade(refund.id, refund.amount, refund.status)

    @activity.defn(name="credit_open_invoice")
    @domain_errors
    async def credit_open_invoice(self, input: OpenInvoiceCreditRequest) -> OpenInvoiceCredited:
        """One Stripe credit note per credit note, whatever the retries: the key is the credit
        note's."""
        note = await self._gateway.credit_open_invoice(
            input.stripe_invoice_id,
            input.amount,
            {"credit_note_id": input.credit_note_id, "tenant_id": input.tenant_id},
            idempotency_key=credit_note_key(input.credit_note_id),
        )
        invoice = note.invoice
        return OpenInvoiceCredited(
            note.id,
            note.amount,
            StripeInvoiceRead(
                stripe_invoice_id=invoice.id,
                status=invoice.status,
                amount_due=invoice.amount_due,
                amount_paid=invoice.amount_paid,
                hosted_invoice_url=invoice.hosted_invoice_url,
                invoice_pdf=invoice.invoice_pdf,
                metadata=dict(invoice.metadata),
            ),
        )


class RefundStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn(name="record_credit_note_refund")
    @domain_errors
    async def record_credit_note_refund(self, input: RecordRefundInput) -> bool:
        async with self._db.tenant_transaction(UUID(input.tenant_id)) as conn:
            return await repo.record_refund(
                conn,
                UUID(input.credit_note_id),
                stripe_refund_id=input.stripe_refund_id or None,
                status=input.status,
                at=datetime.now(UTC),
                actor=input.actor,
                stripe_credit_note_id=input.stripe_credit_note_id or None,
            )
