"""A stand-in for the subscription workflow's side of the dunning contract (ADR 0005): start
the child with ABANDON, continue-as-new at once (losing the child handle), then forward card
updates to the child by id and learn the outcome from its `dunning_finished` signal."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from temporalio import workflow
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from workflows.dunning import DUNNING_FINISHED_SIGNAL, DunningWorkflow, dunning_workflow_id
    from workflows.dunning_io import DunningInput, DunningResult, PaymentMethodUpdated


@dataclass(frozen=True)
class ParentInput:
    dunning: DunningInput
    dunning_task_queue: str
    continued: bool = False


@workflow.defn(name="test_dunning_parent")
class DunningParent:
    def __init__(self) -> None:
        self._result: DunningResult | None = None
        self._to_forward: list[PaymentMethodUpdated] = []

    @workflow.run
    async def run(self, input: ParentInput) -> DunningResult:
        child_id = dunning_workflow_id(input.dunning.invoice_id)
        if not input.continued:
            await workflow.start_child_workflow(
                DunningWorkflow.run,
                input.dunning,
                id=child_id,
                task_queue=input.dunning_task_queue,
                parent_close_policy=ParentClosePolicy.ABANDON,
            )
            workflow.continue_as_new(dataclasses.replace(input, continued=True))
        while True:
            await workflow.wait_condition(
                lambda: self._result is not None or bool(self._to_forward)
            )
            if self._result is not None:
                return self._result
            update = self._to_forward.pop(0)
            # Re-attach by id: this run never held a handle to the child.
            await workflow.get_external_workflow_handle(child_id).signal(
                DunningWorkflow.payment_method_updated, update
            )

    @workflow.signal(name="payment_method_updated")
    def payment_method_updated(self, update: PaymentMethodUpdated) -> None:
        self._to_forward.append(update)

    @workflow.signal(name=DUNNING_FINISHED_SIGNAL)
    def dunning_finished(self, result: DunningResult) -> None:
        self._result = result
