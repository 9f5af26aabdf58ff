"""Starting and messaging workflows from outside Temporal (API, CLI). Every start uses a business
id and an explicit conflict policy, so a repeated call can never start a second run."""

from __future__ import annotations

from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from workflows.io import SubscriptionInput, SubscriptionResult
from workflows.subscription import SubscriptionWorkflow, workflow_id


async def start_subscription(
    client: Client, input: SubscriptionInput, *, task_queue: str
) -> WorkflowHandle[SubscriptionWorkflow, SubscriptionResult]:
    return await client.start_workflow(
        SubscriptionWorkflow.run,
        input,
        id=workflow_id(input.subscription_id),
        task_queue=task_queue,
        # A retried API call finds the running workflow instead of failing or starting another;
        # a finished subscription's id is never reused (reactivation makes a new subscription).
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        static_summary=f"subscription {input.plan.code}/{input.interval} for {input.tenant_name}",
    )
