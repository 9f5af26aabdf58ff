"""Starting and messaging workflows from outside Temporal (API, CLI). Every start uses a business
id and an explicit conflict policy, so a repeated call can never start a second run."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from config import Settings
from workflows.grace import GraceWindowWorkflow, grace_workflow_id
from workflows.grace_io import GraceInput, GraceResult, ReconcileInput
from workflows.io import SubscriptionInput, SubscriptionResult
from workflows.reconcile import SCHEDULE_ID, ReconcileUsageWorkflow
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


async def start_grace_window(
    client: Client, input: GraceInput, *, task_queue: str
) -> WorkflowHandle[GraceWindowWorkflow, GraceResult]:
    """Open the grace window for this (tenant, subject, period) unless it is already open; a
    closed one is never reopened for the same period (the crossing happened once)."""
    return await client.start_workflow(
        GraceWindowWorkflow.run,
        input,
        id=grace_workflow_id(input.tenant_id, input.subject, input.period_key),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        static_summary=f"grace ({input.kind}) for {input.subject}",
    )


async def ensure_reconcile_schedule(client: Client, settings: Settings) -> bool:
    """Create the usage reconciliation schedule; True if created, False if it already existed
    (its spec is then left as an operator may have tuned it in the UI)."""
    try:
        await client.create_schedule(
            SCHEDULE_ID,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    ReconcileUsageWorkflow.run,
                    ReconcileInput(
                        days=settings.reconcile_days,
                        soft_cap_grace_seconds=settings.soft_cap_grace_hours * 3600,
                        time_scale=settings.time_scale,
                        task_queue=settings.task_queue,
                    ),
                    id=f"{SCHEDULE_ID}-run",
                    task_queue=settings.task_queue,
                ),
                spec=ScheduleSpec(
                    intervals=[
                        ScheduleIntervalSpec(
                            every=timedelta(minutes=settings.reconcile_every_minutes)
                        )
                    ]
                ),
                # A slow run is never stacked on by the next one.
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            ),
        )
    except ScheduleAlreadyRunningError:
        return False
    return True
