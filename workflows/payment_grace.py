"""Payment grace for workflow callers (the subscription workflow): open the grace window of an
unpaid invoice, and settle it when the invoice is paid. Contract: docs/adr/0006-payment-grace.md.

Both work from any run of a caller that continues-as-new: the window is a child started with
`parent_close_policy=ABANDON` and is reached again by its business id, never by a held handle.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from billing.grace import PAYMENT
    from workflows.grace import GraceWindowWorkflow, payment_grace_workflow_id
    from workflows.grace_io import GraceInput, GraceResolve

__all__ = [
    "payment_grace_input",
    "payment_grace_workflow_id",
    "resolve_payment_grace",
    "start_payment_grace",
]


def payment_grace_input(
    tenant_id: str, invoice_id: str, grace_seconds: float, actor: str, time_scale: float = 1.0
) -> GraceInput:
    return GraceInput(
        tenant_id=tenant_id,
        kind=PAYMENT,
        subject=invoice_id,
        # The invoice is the "period" of a payment failure (it is in the id, not in a counter).
        period_key=invoice_id,
        period_start="",
        duration_seconds=grace_seconds,
        actor=actor,
        time_scale=time_scale,
    )


async def start_payment_grace(
    tenant_id: str,
    invoice_id: str,
    grace_seconds: float,
    *,
    time_scale: float = 1.0,
    task_queue: str | None = None,
) -> bool:
    """Call from workflow code when a renewal's collection fails. True if this call opened the
    window, False if it already existed (a replayed or repeated failure opens nothing)."""
    actor = f"workflow:{workflow.info().workflow_id}"
    try:
        await workflow.start_child_workflow(
            GraceWindowWorkflow.run,
            payment_grace_input(tenant_id, invoice_id, grace_seconds, actor, time_scale),
            id=payment_grace_workflow_id(tenant_id, invoice_id),
            task_queue=task_queue or workflow.info().task_queue,
            # The window must outlive the caller's run (continue-as-new, cancel).
            parent_close_policy=ParentClosePolicy.ABANDON,
            # A window already settled for this invoice is never run again.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"payment grace for invoice {invoice_id}",
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def resolve_payment_grace(
    tenant_id: str, invoice_id: str, resolution: str, actor: str
) -> bool:
    """Call from workflow code when the invoice is paid ("paid"), or closed unpaid ("voided",
    "canceled": the suspension stays). False when no window is open for the invoice."""
    handle = workflow.get_external_workflow_handle(payment_grace_workflow_id(tenant_id, invoice_id))
    try:
        await handle.signal(GraceWindowWorkflow.resolve, GraceResolve(resolution, actor))
    except FailureError:
        # The window was never opened or has already closed: nothing to settle.
        return False
    return True
