"""Task-queue priority and fairness on the dev server started as `billing dev` starts it (ADR
0014): with a backlog of bulk renewal work queued, a dunning retry is dispatched first, and a
small tenant's renewals are not left behind a large tenant's."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from devstack.temporal import FAIRNESS_FLAGS
from tests.harness import venv_executable
from tests.workflows.priority_probe import PriorityProbe
from workflows.retry import BULK, DUNNING


@pytest.fixture
async def fair_env() -> AsyncIterator[WorkflowEnvironment]:
    # One partition, so dispatch order is the server's priority order and nothing else.
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_executable("temporal"),
        dev_server_extra_args=[
            *FAIRNESS_FLAGS,
            *("--dynamic-config-value", "matching.numTaskqueueReadPartitions=1"),
            *("--dynamic-config-value", "matching.numTaskqueueWritePartitions=1"),
        ],
        ui=False,
    )
    yield env
    await env.shutdown()


async def test_dunning_goes_ahead_of_bulk_renewals_and_small_tenants_are_not_starved(
    fair_env: WorkflowEnvironment,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    workflows_queue, stripe_queue = f"wf-{suffix}", f"stripe-{suffix}"
    # A billing day: the large tenant's 20 renewals queued first, then a small tenant's 2,
    # then one dunning retry.
    plan = [(f"big-{n}", BULK, "tenant-big") for n in range(20)]
    plan += [(f"small-{n}", BULK, "tenant-small") for n in range(2)]
    plan += [("dunning", DUNNING, "tenant-late")]
    order: list[str] = []

    @activity.defn(name="record_dispatch")
    async def record_dispatch(label: str) -> None:
        order.append(label)

    client = fair_env.client
    async with Worker(client, task_queue=workflows_queue, workflows=[PriorityProbe]):
        handle = await client.start_workflow(
            PriorityProbe.run,
            args=[stripe_queue, plan],
            id=f"probe-{suffix}",
            task_queue=workflows_queue,
        )
        for _ in range(200):  # every activity scheduled before anyone polls the queue
            pending = (await handle.describe()).raw_description.pending_activities
            if len(pending) == len(plan):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the activities were never all scheduled")
        # Scheduled is not yet matchable: the server loads a backlog into its matcher in the
        # background. On a loaded machine the first poll could otherwise be answered before
        # the last (dunning) task was loaded, which says nothing about priority.
        await asyncio.sleep(1.0)
        async with Worker(
            client,
            task_queue=stripe_queue,
            activities=[record_dispatch],
            max_concurrent_activities=1,
        ):
            await asyncio.wait_for(handle.result(), timeout=60)

    assert sorted(order) == sorted(label for label, _, _ in plan)
    # Money owed first, though it was queued last.
    assert order[0] == "dunning", order
    # Fairness: the small tenant's renewals share dispatch with the large tenant's instead of
    # waiting behind all 20 of them.
    small = [order.index(f"small-{n}") for n in range(2)]
    assert max(small) <= 5, order
