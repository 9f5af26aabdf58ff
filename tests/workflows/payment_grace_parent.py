"""A stand-in for the subscription workflow's side of the payment grace contract (ADR 0006):
open the window when a collection fails (twice, as a replayed failure would), continue-as-new
(losing any handle), then settle the window by id when the invoice is paid."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.payment_grace import resolve_payment_grace, start_payment_grace


@dataclass(frozen=True)
class GraceParentInput:
    tenant_id: str
    invoice_id: str
    grace_seconds: float
    # The worker queue that runs `grace_window` (not this stand-in's own queue).
    grace_task_queue: str
    continued: bool = False
    opened: tuple[bool, ...] = ()


@dataclass(frozen=True)
class GraceParentResult:
    opened: tuple[bool, ...]
    resolved: bool
    resolved_again: bool


@workflow.defn(name="test_payment_grace_parent")
class PaymentGraceParent:
    def __init__(self) -> None:
        self._paid = False

    @workflow.run
    async def run(self, input: GraceParentInput) -> GraceParentResult:
        if not input.continued:
            first = await start_payment_grace(
                input.tenant_id,
                input.invoice_id,
                input.grace_seconds,
                task_queue=input.grace_task_queue,
            )
            again = await start_payment_grace(
                input.tenant_id,
                input.invoice_id,
                input.grace_seconds,
                task_queue=input.grace_task_queue,
            )
            workflow.continue_as_new(
                dataclasses.replace(input, continued=True, opened=(first, again))
            )
        await workflow.wait_condition(lambda: self._paid)
        actor = f"workflow:{workflow.info().workflow_id}"
        resolved = await resolve_payment_grace(input.tenant_id, input.invoice_id, "paid", actor)
        # The window has closed by now (or is closing): a second settlement finds nothing open
        # or is ignored by the window, and never fails the caller.
        again = await resolve_payment_grace(input.tenant_id, input.invoice_id, "paid", actor)
        return GraceParentResult(opened=input.opened, resolved=resolved, resolved_again=again)

    @workflow.signal(name="invoice_paid")
    def invoice_paid(self) -> None:
        self._paid = True
