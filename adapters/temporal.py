"""Starting and messaging workflows from outside Temporal (API, CLI). Every start uses a business
id and an explicit conflict policy, so a repeated call can never start a second run."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Plugin,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    WorkflowHandle,
)
from temporalio.common import Priority, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError, RPCStatusCode

from billing.exports import export_workflow_id
from config import Settings
from workflows.audit_retention import BOOKS_SCHEDULE_ID as BOOKS_RETENTION_SCHEDULE_ID
from workflows.audit_retention import SCHEDULE_ID as AUDIT_RETENTION_SCHEDULE_ID
from workflows.audit_retention import AuditRetentionWorkflow, ErasedBooksPurgeWorkflow
from workflows.audit_retention_io import BooksRetentionInput, RetentionInput
from workflows.erasure import TenantErasureWorkflow, erasure_workflow_id
from workflows.erasure_io import ErasureInput
from workflows.export import TenantExportWorkflow
from workflows.export_io import ExportInput, ExportProgress
from workflows.grace import GraceWindowWorkflow, grace_id_for
from workflows.grace_io import GraceInput, GraceResolve, GraceResult
from workflows.open_invoice_credit import (
    OpenInvoiceCreditWorkflow,
    open_invoice_credit_workflow_id,
)
from workflows.payment_grace import payment_grace_input, payment_grace_workflow_id
from workflows.reconcile import SCHEDULE_ID, ReconcileUsageWorkflow
from workflows.reconcile_io import ReconcileInput
from workflows.reconcile_stripe import SCHEDULE_ID as STRIPE_SWEEP_SCHEDULE_ID
from workflows.reconcile_stripe import ReconcileStripeWorkflow
from workflows.reconcile_stripe_io import SweepInput, SweepResult
from workflows.refund import CreditNoteRefundWorkflow, refund_workflow_id
from workflows.refund_io import OpenInvoiceCreditInput, RefundInput
from workflows.subscription import SubscriptionWorkflow, workflow_id
from workflows.subscription_io import SubscriptionInput, SubscriptionResult


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
        # Workflow tasks shared fairly between tenants (ADR 0014); activities set their lane.
        priority=Priority(fairness_key=input.tenant_id),
    )


async def start_export(
    client: Client, input: ExportInput, *, task_queue: str
) -> WorkflowHandle[TenantExportWorkflow, ExportProgress]:
    """`export:{tenant}:{export_id}` (ADR 0016); a new id per request."""
    return await client.start_workflow(
        TenantExportWorkflow.run,
        input,
        id=export_workflow_id(input.tenant_id, input.export_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        static_summary=f"data export {input.export_id} of tenant {input.tenant_id}",
        priority=Priority(fairness_key=input.tenant_id),
    )


async def start_refund(client: Client, input: RefundInput, *, task_queue: str) -> None:
    """Start `refund:{credit_note_id}` (ADR 0020)."""
    await _start_credit_note_workflow(
        client, CreditNoteRefundWorkflow.run, input,
        id=refund_workflow_id(input.credit_note_id), task_queue=task_queue,
        summary=f"refund of credit note {input.credit_note_id}",
    )  # fmt: skip


async def start_open_invoice_credit(
    client: Client, input: OpenInvoiceCreditInput, *, task_queue: str
) -> None:
    """Start `credit-note:{credit_note_id}` (ADR 0020)."""
    await _start_credit_note_workflow(
        client, OpenInvoiceCreditWorkflow.run, input,
        id=open_invoice_credit_workflow_id(input.credit_note_id), task_queue=task_queue,
        summary=f"credit note {input.credit_note_id} on an open invoice",
    )  # fmt: skip


async def _start_credit_note_workflow(
    client: Client, run: Any, input: Any, *, id: str, task_queue: str, summary: str
) -> None:
    """Start a credit note's workflow unless it is running or completed; a run that failed may
    be started again (its Stripe key is the credit note's, so Stripe acts once)."""
    try:
        await client.start_workflow(
            run,
            input,
            id=id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            static_summary=summary,
        )
    except WorkflowAlreadyStartedError:
        pass  # ran to its end before: what it did is recorded


async def start_erasure(client: Client, input: ErasureInput, *, task_queue: str) -> bool:
    """Start `erase:{tenant}` (ADR 0018); False when it exists already, running or done: a
    second erase of the same tenant is a no-op."""
    try:
        await client.start_workflow(
            TenantErasureWorkflow.run,
            input,
            id=erasure_workflow_id(input.tenant_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"erasure of tenant {input.tenant_id}",
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def start_grace_window(
    client: Client, input: GraceInput, *, task_queue: str
) -> WorkflowHandle[GraceWindowWorkflow, GraceResult]:
    """Open the grace window for this (tenant, subject, period) unless it is already open; a
    closed one is never reopened for the same period (the crossing happened once)."""
    return await client.start_workflow(
        GraceWindowWorkflow.run,
        input,
        id=grace_id_for(input),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        static_summary=f"grace ({input.kind}) for {input.subject}",
    )


async def start_payment_grace(
    client: Client,
    tenant_id: str,
    invoice_id: str,
    *,
    grace_seconds: float,
    actor: str,
    task_queue: str,
    time_scale: float = 1.0,
) -> WorkflowHandle[GraceWindowWorkflow, GraceResult]:
    """Open the payment grace window of an unpaid invoice (`grace:{tenant}:payment:{invoice}`):
    a repeated call finds the same window; a settled one is never reopened. The caller passes
    `grace_seconds` from `Settings.payment_grace_days` (the workflow never reads settings)."""
    return await start_grace_window(
        client,
        payment_grace_input(tenant_id, invoice_id, grace_seconds, actor, time_scale),
        task_queue=task_queue,
    )


async def resolve_payment_grace(
    client: Client, tenant_id: str, invoice_id: str, resolution: str, actor: str
) -> bool:
    """Settle the invoice's payment window ("paid" and "waived" end a suspension at once).
    False when there is no open window (never started, or already settled)."""
    handle = client.get_workflow_handle(payment_grace_workflow_id(tenant_id, invoice_id))
    try:
        await handle.signal(GraceWindowWorkflow.resolve, GraceResolve(resolution, actor))
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


async def _ensure_schedule(
    client: Client,
    schedule_id: str,
    run: Any,
    arg: Any,
    *,
    every: timedelta,
    task_queue: str,
    summary: str,
) -> bool:
    """Create a schedule that starts `run(arg)` every `every`; True if created, False if it
    already existed (its spec is then left as an operator may have tuned it in the UI). A slow
    run is never stacked on by the next one."""
    try:
        await client.create_schedule(
            schedule_id,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    run, arg, id=f"{schedule_id}-run", task_queue=task_queue,
                    static_summary=summary,
                ),
                spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            ),
        )  # fmt: skip
    except ScheduleAlreadyRunningError:
        return False
    return True


async def ensure_reconcile_schedule(client: Client, settings: Settings) -> bool:
    """The usage reconciliation schedule."""
    return await _ensure_schedule(
        client,
        SCHEDULE_ID,
        ReconcileUsageWorkflow.run,
        ReconcileInput(
            days=settings.reconcile_days,
            soft_cap_grace_seconds=settings.soft_cap_grace_hours * 3600,
            time_scale=settings.time_scale,
            task_queue=settings.task_queue,
        ),
        every=timedelta(minutes=settings.reconcile_every_minutes),
        task_queue=settings.task_queue,
        summary=f"usage reconciliation, last {settings.reconcile_days} days",
    )


async def ensure_stripe_sweep_schedule(client: Client, settings: Settings) -> bool:
    """The lost-webhook sweeper's schedule (ADR 0013)."""
    return await _ensure_schedule(
        client,
        STRIPE_SWEEP_SCHEDULE_ID,
        ReconcileStripeWorkflow.run,
        sweep_input(settings, settings.stripe_sweep_min_age_minutes * 60),
        every=timedelta(minutes=settings.stripe_sweep_every_minutes),
        task_queue=settings.task_queue,
        summary="re-read invoices open too long from Stripe",
    )


async def ensure_audit_retention_schedule(client: Client, settings: Settings) -> bool:
    """The audit log's daily retention purge (ADR 0017)."""
    months = settings.audit_retention_months
    return await _ensure_schedule(
        client,
        AUDIT_RETENTION_SCHEDULE_ID,
        AuditRetentionWorkflow.run,
        RetentionInput(months=months),
        every=timedelta(days=1),
        task_queue=settings.task_queue,
        summary=f"purge audit rows older than {months} months",
    )


async def ensure_books_retention_schedule(client: Client, settings: Settings) -> bool:
    """The daily purge of erased tenants' books past the legal retention (ADR 0018)."""
    months = settings.books_retention_months
    return await _ensure_schedule(
        client,
        BOOKS_RETENTION_SCHEDULE_ID,
        ErasedBooksPurgeWorkflow.run,
        BooksRetentionInput(months=months),
        every=timedelta(days=1),
        task_queue=settings.task_queue,
        summary=f"purge books of tenants erased over {months} months ago",
    )


def sweep_input(settings: Settings, min_age_seconds: float) -> SweepInput:
    return SweepInput(
        min_age_seconds=min_age_seconds,
        stripe_task_queue=settings.stripe_task_queue,
        limit=settings.stripe_sweep_batch,
    )


async def run_stripe_sweep(
    client: Client, settings: Settings, min_age_seconds: float
) -> SweepResult:
    """`billing reconcile-stripe`: one sweep now, waited for."""
    return await client.execute_workflow(
        ReconcileStripeWorkflow.run,
        sweep_input(settings, min_age_seconds),
        id=f"{STRIPE_SWEEP_SCHEDULE_ID}-manual-{uuid.uuid4().hex[:12]}",
        task_queue=settings.task_queue,
        static_summary="re-read invoices open too long from Stripe (by hand)",
    )


async def connect_temporal(
    settings: Settings,
    *,
    lazy: bool = False,
    sdk_metrics_port: int | None = None,
    plugins: Sequence[Plugin] = (),
) -> Client:
    """`lazy`: connect on first use, so the API starts (and stores webhooks) while Temporal is
    down. `sdk_metrics_port`: serve the SDK's own Prometheus metrics (workflow task latencies,
    activity schedule-to-start, sticky cache, request failures) on that port of
    `settings.metrics_host`, through a runtime of this process's own (call once per process).
    `plugins`: the tracing plugin when traces are on; workers built from the client take it
    too."""
    if settings.temporal_address is None:
        raise SystemExit("BILLING_TEMPORAL_ADDRESS is not set (run through `billing dev`)")
    runtime = None
    if sdk_metrics_port:
        address = f"{settings.metrics_host}:{sdk_metrics_port}"
        runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        lazy=lazy,
        runtime=runtime,
        plugins=plugins,
    )
