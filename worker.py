"""Composition root of the worker process: builds adapters once and registers every workflow and
activity. Tests call `build_workers` with fakes so registration never drifts between them."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import signal
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from temporalio.client import Client
from temporalio.worker import Worker

from activities.audit import AuditActivities
from activities.billing_store import BillingStore
from activities.customers import CustomerActivities
from activities.dunning import DunningStore, DunningStripeActivities
from activities.erasure import ErasureStore, ErasureStripe
from activities.exports import ExportActivities
from activities.notifications import NotificationActivities
from activities.refunds import RefundStore, RefundStripe
from activities.stripe_billing import StripeBillingActivities
from activities.stripe_events import StripeEventReads, StripeEventStore
from activities.stripe_sweep import StripeSweepStore
from activities.subscription_store import SubscriptionStore
from activities.usage_store import UsageStore
from adapters import logs, metrics
from adapters.db.session import Database
from adapters.dispatch import DispatchConfig, Dispatcher
from adapters.export_files import ExportFiles
from adapters.notification_sender import HttpxNotificationSender, NotificationSender
from adapters.stripe_sdk import build_gateway
from adapters.temporal import (
    connect_temporal,
    ensure_audit_retention_schedule,
    ensure_books_retention_schedule,
    ensure_reconcile_schedule,
    ensure_stripe_sweep_schedule,
)
from adapters.tracing import Tracing
from billing.catalog import load_catalog
from billing.disputes import DisputePolicy
from billing.payments import StripeGateway
from config import ROOT, WORKER_ROLE, WORKER_SCOPED_ROLE, Settings
from workflows.audit_retention import AuditRetentionWorkflow, ErasedBooksPurgeWorkflow
from workflows.dunning import DunningWorkflow
from workflows.erasure import TenantErasureWorkflow
from workflows.export import TenantExportWorkflow
from workflows.grace import GraceWindowWorkflow
from workflows.notification_delivery import NotificationDeliveryWorkflow
from workflows.open_invoice_credit import OpenInvoiceCreditWorkflow
from workflows.reconcile import ReconcileUsageWorkflow
from workflows.reconcile_stripe import ReconcileStripeWorkflow
from workflows.refund import CreditNoteRefundWorkflow
from workflows.stripe_event import StripeEventWorkflow
from workflows.subscription import SubscriptionWorkflow

log = logging.getLogger("billing.worker")

WORKFLOWS: Sequence[type] = (
    SubscriptionWorkflow,
    StripeEventWorkflow,
    NotificationDeliveryWorkflow,
    GraceWindowWorkflow,
    ReconcileUsageWorkflow,
    ReconcileStripeWorkflow,
    DunningWorkflow,
    TenantExportWorkflow,
    AuditRetentionWorkflow,
    ErasedBooksPurgeWorkflow,
    TenantErasureWorkflow,
    CreditNoteRefundWorkflow,
    OpenInvoiceCreditWorkflow,
)


def gauge_metrics(catalog_path: Path = ROOT / "catalog" / "plans.toml") -> list[str]:
    """Metrics aggregated by max (gauges): reconciliation recomputes them with max, not sum."""
    return list(load_catalog(catalog_path).gauge_metrics)


def main_queue_activities(
    db: Database,
    sender: NotificationSender,
    dispatcher: Dispatcher,
    gauges: Sequence[str] | None = None,
    export_dir: Path | None = None,
    client: Client | None = None,
    dispute_policy: DisputePolicy = "none",
) -> list[Callable[..., Any]]:
    store = SubscriptionStore(db)
    billing = BillingStore(db)
    events = StripeEventStore(db, dispute_policy)
    notifications = NotificationActivities(db, sender, dispatcher)
    usage = UsageStore(db, gauge_metrics() if gauges is None else gauges)
    dunning = DunningStore(db)
    sweep = StripeSweepStore(db)
    audit = AuditActivities(db)
    erasure = ErasureStore(db, client)
    # Field defaults when not given (no environment is read here).
    exports = ExportActivities(
        db, ExportFiles(export_dir or Settings.model_construct().exports_path())
    )
    return [
        store.record_stripe_customer,
        store.project_subscription,
        billing.record_invoice,
        billing.project_invoice,
        billing.record_subscription_change,
        billing.record_payment_method,
        events.resolve_stripe_event,
        events.project_stripe_event,
        events.mark_stripe_event,
        events.apply_dispute,
        notifications.send_notification,
        notifications.deliver_notification,
        notifications.mark_notification,
        usage.record_grace_period,
        usage.apply_grace_expiry,
        usage.settle_payment_grace,
        usage.reconcile_usage_days,
        usage.compute_period_overage,
        usage.find_missing_grace_windows,
        dunning.record_dunning_attempt,
        dunning.project_dunning_invoice,
        sweep.find_stale_invoices,
        sweep.report_stripe_drift,
        audit.purge_audit_log,
        audit.purge_erased_books,
        erasure.erasure_subjects,
        erasure.cancel_for_erasure,
        erasure.revoke_tenant_access,
        erasure.tombstone_tenant,
        exports.export_table,
        exports.finish_export,
        exports.expire_export,
        RefundStore(db).record_credit_note_refund,
    ]


def stripe_queue_activities(gateway: StripeGateway) -> list[Callable[..., Any]]:
    customers = CustomerActivities(gateway)
    invoicing = StripeBillingActivities(gateway)
    reads = StripeEventReads(gateway)
    dunning = DunningStripeActivities(gateway)
    return [
        customers.ensure_stripe_customer,
        invoicing.create_stripe_invoice,
        invoicing.collect_invoice,
        invoicing.attach_payment_method,
        reads.reread_stripe_invoice,
        reads.find_payment_invoice,
        dunning.reread_dunning_invoice,
        dunning.retry_invoice_payment,
        dunning.close_unrecovered_invoice,
        ErasureStripe(gateway).erase_stripe_customer,
        RefundStripe(gateway).refund_credit_note,
        RefundStripe(gateway).credit_open_invoice,
    ]


def build_workers(
    client: Client,
    *,
    db: Database,
    gateway: StripeGateway,
    task_queue: str,
    stripe_task_queue: str,
    stripe_activities_per_second: float,
    stripe_requests_per_second: float | None = None,
    gauges: Sequence[str] | None = None,
    dispatch: DispatchConfig | None = None,
    sender: NotificationSender | None = None,
    workflows: Sequence[type] = WORKFLOWS,
    max_cached_workflows: int = 1000,
    export_dir: Path | None = None,
    dispute_policy: DisputePolicy = "none",
) -> list[Worker]:
    """`dispatch` defaults to the default retry schedules on these queues; `sender` to an httpx
    sender with a 10 s timeout; `workflows` lets tests swap in stand-ins."""
    if dispatch is None:
        # Field defaults only: no environment is read here (model_construct skips it).
        dispatch = DispatchConfig.from_settings(
            Settings.model_construct(task_queue=task_queue, stripe_task_queue=stripe_task_queue)
        )
    dispatcher = Dispatcher(db, client, dispatch)
    sender = sender or HttpxNotificationSender(timeout_seconds=10.0)
    return [
        Worker(
            client,
            task_queue=task_queue,
            workflows=list(workflows),
            activities=main_queue_activities(
                db, sender, dispatcher, gauges, export_dir, client, dispute_policy
            ),
            max_cached_workflows=max_cached_workflows,
            # Nearly every activity here holds a Postgres connection: no more run at once
            # than the pool has, so a burst (2,000 webhooks' workflows at once) waits in
            # Temporal's queue instead of failing on the pool's timeout.
            max_concurrent_activities=db.connections,
            max_concurrent_local_activities=db.connections,
        ),
        # Stripe calls get their own queue so the server can cap their rate for every worker
        # together: a billing day with thousands of renewals queues instead of hitting 429s.
        Worker(
            client,
            task_queue=stripe_task_queue,
            activities=stripe_queue_activities(gateway),
            max_task_queue_activities_per_second=stripe_activities_per_second,
            # About a second of requests in hand (ADR 0025): the gateway paces requests, and
            # what waits beyond that waits in Temporal, where priority and fairness order it.
            max_concurrent_activities=(
                max(2, math.ceil(stripe_requests_per_second))
                if stripe_requests_per_second is not None
                else None
            ),
        ),
    ]


def freeze_startup_heap() -> None:
    """Moves what startup allocated (modules, the SDK, the catalog) out of the collector's
    reach: a worker caching thousands of workflows (ADR 0025) then traverses only their objects
    in a full collection, not the whole process's, so its pauses stay short."""
    gc.collect()
    gc.freeze()


async def run_worker(settings: Settings) -> None:
    tracing = Tracing.from_settings(settings, "billing-worker")
    if tracing is not None:
        tracing.install()
    client = await connect_temporal(
        settings,
        sdk_metrics_port=settings.worker_sdk_metrics_port,
        plugins=tracing.temporal_plugins() if tracing else (),
    )
    db = Database(
        settings.role_url(WORKER_ROLE),
        pool_size=settings.db_pool_size,
        scoped_role=WORKER_SCOPED_ROLE,
    )
    dispatch = DispatchConfig.from_settings(settings)
    sender = HttpxNotificationSender(timeout_seconds=settings.notification_timeout_seconds)
    workers = build_workers(
        client,
        db=db,
        gateway=cast(StripeGateway, metrics.MeteredGateway(build_gateway(settings))),
        task_queue=settings.task_queue,
        stripe_task_queue=settings.stripe_task_queue,
        stripe_activities_per_second=settings.stripe_activities_per_second,
        stripe_requests_per_second=settings.stripe_requests_per_second,
        max_cached_workflows=settings.worker_max_cached_workflows,
        gauges=gauge_metrics(settings.catalog_path),
        dispatch=dispatch,
        sender=sender,
        export_dir=settings.exports_path(),
        dispute_policy=settings.dispute_policy,
    )
    await ensure_reconcile_schedule(client, settings)
    await ensure_stripe_sweep_schedule(client, settings)
    await ensure_audit_retention_schedule(client, settings)
    await ensure_books_retention_schedule(client, settings)
    stop_metrics = (
        metrics.serve(settings.metrics_host, settings.worker_metrics_port)
        if settings.worker_metrics_port
        else None
    )
    stop = asyncio.Event()
    gauges = (
        asyncio.create_task(metrics.refresh_gauges(db, stop, settings.metrics_refresh_seconds))
        if stop_metrics is not None
        else None
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    freeze_startup_heap()
    runs = [asyncio.create_task(w.run()) for w in workers]
    # Starts workflows for inbox rows and deliveries left without one (e.g. Temporal was down
    # when the webhook arrived). Runs here, not as a Temporal schedule, for that very case.
    redispatcher = asyncio.create_task(
        Dispatcher(db, client, dispatch).run(
            stop,
            interval_seconds=settings.redispatch_interval_seconds,
            batch=settings.redispatch_batch_size,
            min_age_seconds=settings.redispatch_min_age_seconds,
        )
    )
    log.info("polling task queues %s and %s", settings.task_queue, settings.stripe_task_queue)
    try:
        done, _ = await asyncio.wait(
            [*runs, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task in runs and task.exception():
                raise task.exception()  # type: ignore[misc]
    finally:
        # Graceful: running activities finish (or time out) before the process exits.
        stop.set()
        await asyncio.gather(redispatcher, *([gauges] if gauges else []), return_exceptions=True)
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        await sender.aclose()
        await db.dispose()
        if stop_metrics is not None:
            stop_metrics()
        if tracing is not None:
            tracing.shutdown()


def main(settings: Settings) -> None:
    logs.configure(settings.log_format)
    asyncio.run(run_worker(settings))
