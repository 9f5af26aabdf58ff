"""CreditNoteRefundWorkflow (`refund:{credit_note_id}`, ADR 0020): refund a credit note to the
card its invoice was paid with, then record the refund on the credit note. The Stripe call
carries the idempotency key `refund:{credit_note_id}`, so a retried activity, a replayed
workflow or a second start finds the same refund; the credit note was issued (and checked
against what is left to refund) before this workflow started."""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    import workflows.activity_refs as refs
    from workflows.activity_refs import call
    from workflows.errors import refusal_reason
    from workflows.refund_io import (
        RecordRefundInput,
        RefundInput,
        RefundMade,
        RefundRequest,
        RefundResult,
    )
    from workflows.retry import CUSTOMER, db_activity, lane, stripe_write


def refund_workflow_id(credit_note_id: str) -> str:
    return f"refund:{credit_note_id}"


@workflow.defn(name="credit_note_refund")
class CreditNoteRefundWorkflow:
    @workflow.run
    async def run(self, input: RefundInput) -> RefundResult:
        priority = lane(CUSTOMER, input.tenant_id)
        workflow.set_current_details(f"refunding {input.amount} for {input.credit_note_id}")
        try:
            made: RefundMade = await call(
                refs.REFUND_CREDIT_NOTE,
                RefundRequest(
                    input.tenant_id, input.credit_note_id, input.stripe_invoice_id, input.amount
                ),
                **stripe_write(
                    input.stripe_task_queue, "refund the credit note to the card", priority
                ),
            )
        except ActivityError as err:
            # Stripe refused for good (retries are the activity's): the credit note says so,
            # and no longer counts against what is left to refund.
            reason = refusal_reason(err)
            workflow.logger.warning("refund of %s refused: %s", input.credit_note_id, reason)
            made = RefundMade("", input.amount, "failed")
        await call(
            refs.RECORD_CREDIT_NOTE_REFUND,
            RecordRefundInput(
                input.tenant_id,
                input.credit_note_id,
                made.stripe_refund_id,
                made.status,
                f"system:{workflow.info().workflow_id}",
            ),
            **db_activity("record the refund on the credit note", priority),
        )
        workflow.set_current_details(f"refund {made.stripe_refund_id}: {made.status}")
        return RefundResult(input.credit_note_id, made.stripe_refund_id, made.status)
