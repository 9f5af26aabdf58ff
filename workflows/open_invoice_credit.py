"""OpenInvoiceCreditWorkflow (`credit-note:{credit_note_id}`, ADR 0020): lower an open invoice's
amount due by a credit note. The Stripe credit note carries the key
`credit-note:{credit_note_id}` and the credit note's id in its metadata, so a retried activity,
a replayed workflow or a second start finds the same one; the credit note was issued (and
checked against what is still due) before this workflow started. Then the credit note and the
invoice's lower amount due are recorded, and when the credit settled the invoice in full its
subscription is told as the `invoice.paid` webhook would have told it, so dunning stops."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    import workflows.activity_refs as refs
    from workflows.activity_refs import call
    from workflows.errors import refusal_reason
    from workflows.reconcile_stripe import send_invoice_finding
    from workflows.refund_io import (
        OpenInvoiceCredited,
        OpenInvoiceCreditInput,
        OpenInvoiceCreditRequest,
        RecordRefundInput,
        RefundResult,
    )
    from workflows.retry import CUSTOMER, db_activity, lane, stripe_write


def open_invoice_credit_workflow_id(credit_note_id: str) -> str:
    return f"credit-note:{credit_note_id}"


@workflow.defn(name="credit_note_open_invoice")
class OpenInvoiceCreditWorkflow:
    @workflow.run
    async def run(self, input: OpenInvoiceCreditInput) -> RefundResult:
        priority = lane(CUSTOMER, input.tenant_id)
        workflow.set_current_details(
            f"lowering invoice {input.invoice_id} by {input.amount} ({input.credit_note_id})"
        )
        made: OpenInvoiceCredited | None = None
        try:
            made = await call(
                refs.CREDIT_OPEN_INVOICE,
                OpenInvoiceCreditRequest(
                    input.tenant_id, input.credit_note_id, input.stripe_invoice_id, input.amount
                ),
                **stripe_write(
                    input.stripe_task_queue, "credit the open invoice in Stripe", priority
                ),
            )
        except ActivityError as err:
            # Stripe refused for good (the invoice was paid or voided meanwhile, say): the
            # credit note says so, and no longer counts against what is due.
            reason = refusal_reason(err)
            workflow.logger.warning("credit note %s refused: %s", input.credit_note_id, reason)
        status = "succeeded" if made is not None else "failed"
        stripe_credit_note_id = made.stripe_credit_note_id if made is not None else ""
        await call(
            refs.RECORD_CREDIT_NOTE_REFUND,
            RecordRefundInput(
                input.tenant_id,
                input.credit_note_id,
                "",
                status,
                f"system:{workflow.info().workflow_id}",
                stripe_credit_note_id=stripe_credit_note_id,
            ),
            **db_activity("record the credit note and the lower amount due", priority),
        )
        if made is not None and made.invoice.status == "paid" and input.subscription_id:
            await send_invoice_finding(input.subscription_id, input.invoice_id, made.invoice)
        workflow.set_current_details(f"credit note {stripe_credit_note_id or '-'}: {status}")
        return RefundResult(input.credit_note_id, stripe_credit_note_id, status)
