"""A probe workflow for tests/workflows/test_priority.py, in a module of its own: the workflow
sandbox re-imports its module, which must have no side effects."""

from __future__ import annotations

import asyncio

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.retry import lane, stripe_write


@workflow.defn(name="priority_probe")
class PriorityProbe:
    """Schedules one activity per (label, priority key, tenant), with the engine's option set
    for a keyed Stripe write, all at once, on a queue nobody polls yet."""

    @workflow.run
    async def run(self, queue: str, plan: list[tuple[str, int, str]]) -> None:
        await asyncio.gather(
            *(
                workflow.execute_activity(
                    "record_dispatch", label, **stripe_write(queue, label, lane(key, tenant))
                )
                for label, key, tenant in plan
            )
        )
