"""The parent side of the dunning contract (ADR 0005), with a stand-in parent that continues-as-new
right after starting the child, so it must re-attach by id and learn the outcome by signal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.stripe_fake import FakeStripeGateway
from billing.dunning import DunningPolicy
from config import Settings
from tests.factories.invoices import make_unpaid_invoice
from tests.harness import Databases, start_time_skipping_env
from tests.workflows.dunning_parent import DunningParent, ParentInput
from tests.workflows.test_dunning import Handle, dunning_input_for, invoice_row, wait_for
from workflows.dunning import DunningWorkflow, dunning_workflow_id
from workflows.dunning_io import PaymentMethodUpdated


@pytest.fixture(scope="module")
async def workflow_env() -> AsyncIterator[WorkflowEnvironment]:
    """A server of its own: after a parent/child pair with signals, the time-skipping test
    server stops skipping time for good (temporalio/sdk-java#1618, #2392), so no other test
    may share it."""
    env = await start_time_skipping_env()
    yield env
    await env.shutdown()


async def test_a_parent_that_continued_as_new_reattaches_by_id_and_learns_the_outcome(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
    workers: list[Worker],
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    dunning_input = dunning_input_for(settings, inv, DunningPolicy())
    parent_queue = settings.task_queue + "-parent"
    async with Worker(workflow_env.client, task_queue=parent_queue, workflows=[DunningParent]):
        parent = await workflow_env.client.start_workflow(
            DunningParent.run,
            ParentInput(dunning_input, dunning_task_queue=settings.task_queue),
            id=f"test-parent:{inv.invoice_id}",
            task_queue=parent_queue,
        )
        child: Handle = workflow_env.client.get_workflow_handle_for(
            DunningWorkflow.run, dunning_workflow_id(str(inv.invoice_id))
        )
        await workflow_env.sleep(timedelta(days=1, hours=12))
        await wait_for(child, lambda s: s.attempts == 1 and s.phase == "waiting")

        good_card = stripe_fake.register_card()
        await stripe_fake.attach_payment_method(
            inv.stripe_customer_id, good_card, idempotency_key=f"pm:{good_card}"
        )
        await parent.signal(
            DunningParent.payment_method_updated, PaymentMethodUpdated("evt_pm_1", good_card)
        )
        result = await parent.result()

    assert (result.outcome, result.attempts, result.last_attempt) == ("recovered", 2, 3)
    first_run = workflow_env.client.get_workflow_handle(parent.id, run_id=parent.result_run_id)
    assert (await first_run.describe()).status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert result == await child.result()
    assert len(stripe_fake.charges_for(inv.stripe_invoice_id)) == 1
    assert (await invoice_row(dbs, inv))["status"] == "paid"
