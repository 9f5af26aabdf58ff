"""A credit note's refund (`credit_note_refund`, ADR 0020): the Stripe call, on the
rate-limited Stripe queue, and its record on the credit note."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from temporalio import activity

from activities.errors import domain_errors
from adapters.db import credit_notes as repo
from adapters.db.session import Database
from billing.payments import StripeGateway
from workflows.refund_io import RecordRefundInput, RefundMade, RefundRequest


def refund_key(credit_note_id: str) -> str:
    return f"refund:{credit_note_id}"


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
            )
