"""ReconcileStripeWorkflow (`reconcile_stripe`): the lost-webhook sweeper (ADR 0013).

Run by a Temporal Schedule (`stripe-invoice-sweep`, created idempotently by the worker) and by
hand (`billing reconcile-stripe`). It takes the invoices the engine has had open (or with a
payment attempt in flight) for longer than `min_age_seconds`, re-reads each from Stripe on the
rate-limited queue, and sends what it finds to the invoice's subscription as the `stripe_event`
signal a webhook would have sent, so a dropped `invoice.paid` still settles the invoice. The
event id is `sweep:{stripe_invoice_id}:{status}`: the same finding twice is applied once. It
reports every difference between the engine's invoice and Stripe's (status, amounts).
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    import workflows.activity_refs as refs
    from billing.stripe_sweep import EVENT_FOR_STATUS, InvoiceFigures, drift, sweep_event_id
    from workflows.activity_refs import call
    from workflows.reconcile_stripe_io import (
        DriftReport,
        InvoiceDrift,
        StaleInvoice,
        StaleInvoices,
        SweepInput,
        SweepResult,
    )
    from workflows.retry import db_activity, stripe_read
    from workflows.shared_io import RereadInvoiceInput, StripeInvoiceRead
    from workflows.stripe_event import SUBSCRIPTION_SIGNAL, subscription_workflow_id
    from workflows.subscription_io import StripeEventSignal

SCHEDULE_ID = "stripe-invoice-sweep"


@workflow.defn(name="reconcile_stripe")
class ReconcileStripeWorkflow:
    @workflow.run
    async def run(self, input: SweepInput) -> SweepResult:
        workflow.set_current_details("finding invoices open too long")
        stale: StaleInvoices = await call(
            refs.FIND_STALE_INVOICES, input, **db_activity("find invoices open too long")
        )
        found: list[InvoiceDrift] = []
        applied = 0
        for n, invoice in enumerate(stale.invoices, start=1):
            workflow.set_current_details(f"re-reading invoice {n} of {len(stale.invoices)}")
            current: StripeInvoiceRead = await call(
                refs.REREAD_STRIPE_INVOICE,
                RereadInvoiceInput(invoice.stripe_invoice_id),
                **stripe_read(input.stripe_task_queue, f"re-read {invoice.stripe_invoice_id}"),
            )
            found += _drift(invoice, current)
            if current.status in EVENT_FOR_STATUS and await self._apply(invoice, current):
                applied += 1
        if found:
            await call(
                refs.REPORT_STRIPE_DRIFT,
                DriftReport(found),
                **db_activity(f"report {len(found)} differences"),
            )
        workflow.set_current_details(
            f"checked {len(stale.invoices)}, applied {applied}, {len(found)} difference(s)"
        )
        return SweepResult(checked=len(stale.invoices), applied=applied, drift=found)

    async def _apply(self, invoice: StaleInvoice, current: StripeInvoiceRead) -> bool:
        if invoice.subscription_id is None:
            return False
        return await send_invoice_finding(invoice.subscription_id, invoice.invoice_id, current)


async def send_invoice_finding(
    subscription_id: str, invoice_id: str, current: StripeInvoiceRead
) -> bool:
    """A Stripe invoice found in `current.status`, sent to its subscription as the webhook of
    that type would have reached it (event id `sweep:{stripe_invoice_id}:{status}`: the same
    finding twice is applied once); False when the subscription is not running."""
    signal = StripeEventSignal(
        event_id=sweep_event_id(current.stripe_invoice_id, current.status),
        event_type=EVENT_FOR_STATUS[current.status],
        stripe_object_id=current.stripe_invoice_id,
        invoice_id=invoice_id,
        stripe_invoice_id=current.stripe_invoice_id,
        invoice_status=current.status,
        amount_paid=current.amount_paid,
        hosted_invoice_url=current.hosted_invoice_url,
    )
    target = workflow.get_external_workflow_handle(subscription_workflow_id(subscription_id))
    try:
        await target.signal(SUBSCRIPTION_SIGNAL, signal)
    except FailureError:
        workflow.logger.info("subscription %s is not running", subscription_id)
        return False
    return True


def _drift(invoice: StaleInvoice, current: StripeInvoiceRead) -> list[InvoiceDrift]:
    engine = InvoiceFigures(invoice.status, invoice.amount_due, invoice.amount_paid)
    stripe = InvoiceFigures(current.status, current.amount_due, current.amount_paid)
    return [
        InvoiceDrift(invoice.tenant_id, invoice.invoice_id, name, ours, theirs)
        for name, ours, theirs in drift(engine, stripe)
    ]
