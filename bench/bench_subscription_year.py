"""Wall time per subscription-year of SubscriptionWorkflow on the time-skipping server.

N monthly subscriptions run a year each (12 periods billed: mirror to the Stripe fake, collect,
project) with the real workflow, the real Stripe activities over the in-memory fake, and the
Postgres activities replaced by in-memory recorders (registered under the same names), so the
number measures orchestration, not the database. The baseline in the same run is N workflows of
twelve bare one-month timers.

    .venv/bin/python bench/bench_subscription_year.py [N]
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOCAL_ACTIVITY = "marker core_local_activity"
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]

from baseline_workflow import NoopActivities, TwelveTimers, noop  # noqa: E402
from temporalio import activity  # noqa: E402
from temporalio.api.enums.v1 import EventType, IndexedValueType  # noqa: E402
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from activities.customers import CustomerActivities  # noqa: E402
from activities.stripe_billing import StripeBillingActivities  # noqa: E402
from adapters.stripe_fake import FakeStripeGateway  # noqa: E402
from billing.catalog import load_catalog  # noqa: E402
from workflows import search_attributes  # noqa: E402
from workflows.notification_io import SendNotificationInput, SendNotificationResult  # noqa: E402
from workflows.shared_io import InvoiceProjection, ProjectionResult  # noqa: E402
from workflows.subscription import SubscriptionWorkflow  # noqa: E402
from workflows.subscription_io import (  # noqa: E402
    PeriodOverageInput,
    PeriodOverageResult,
    PlanSnapshot,
    RecordChangeResult,
    RecordCustomerInput,
    RecordCustomerResult,
    RecordInvoiceInput,
    RecordInvoiceResult,
    RecordPaymentMethodInput,
    SubscriptionChange,
    SubscriptionInput,
    SubscriptionProjection,
)


class InMemoryStore:
    """The Postgres activities' names and payloads, recorded in memory."""

    def __init__(self) -> None:
        self.invoices: dict[str, int] = {}

    @activity.defn(name="record_stripe_customer")
    async def record_stripe_customer(self, input: RecordCustomerInput) -> RecordCustomerResult:
        return RecordCustomerResult(True)

    @activity.defn(name="project_subscription")
    async def project_subscription(self, input: SubscriptionProjection) -> ProjectionResult:
        return ProjectionResult(True)

    @activity.defn(name="compute_period_overage")
    async def compute_period_overage(self, input: PeriodOverageInput) -> PeriodOverageResult:
        return PeriodOverageResult()

    @activity.defn(name="record_invoice")
    async def record_invoice(self, input: RecordInvoiceInput) -> RecordInvoiceResult:
        self.invoices[input.billing_key] = input.total
        return RecordInvoiceResult(input.invoice_id, True)

    @activity.defn(name="project_invoice")
    async def project_invoice(self, input: InvoiceProjection) -> ProjectionResult:
        return ProjectionResult(True)

    @activity.defn(name="record_subscription_change")
    async def record_subscription_change(self, input: SubscriptionChange) -> RecordChangeResult:
        return RecordChangeResult(True)

    @activity.defn(name="record_payment_method")
    async def record_payment_method(self, input: RecordPaymentMethodInput) -> RecordChangeResult:
        return RecordChangeResult(True)

    @activity.defn(name="send_notification")
    async def send_notification(self, input: SendNotificationInput) -> SendNotificationResult:
        return SendNotificationResult([])


async def _register_search_attributes(client: Client) -> None:
    types = {
        "KEYWORD": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "DATETIME": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    }
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={
                k.name: types[k.indexed_value_type.name] for k in search_attributes.ALL
            },
        )
    )


async def _run_year(env: WorkflowEnvironment, done: Callable[[], bool]) -> float:
    """Skip a year of test time and wait until `done()` is true; returns wall seconds."""
    t0 = time.perf_counter()
    await env.sleep(timedelta(days=365) - timedelta(hours=1))
    while not done():
        await env.sleep(timedelta(seconds=1))
    return time.perf_counter() - t0


async def main(n: int) -> None:
    server = shutil.which("temporal-test-server", path=str(ROOT / ".venv" / "bin"))
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=server)
    try:
        await _register_search_attributes(env.client)
        gateway = FakeStripeGateway()
        store = InMemoryStore()
        stripe = StripeBillingActivities(gateway)
        customers = CustomerActivities(gateway)
        plan = load_catalog(ROOT / "catalog" / "plans.toml").plan("standard")
        snapshot = PlanSnapshot(str(uuid.uuid4()), plan.code, 1, plan.to_dict())
        workers = [
            Worker(
                env.client,
                task_queue="bench",
                workflows=[SubscriptionWorkflow, TwelveTimers, NoopActivities],
                activities=[
                    noop,
                    store.record_stripe_customer,
                    store.project_subscription,
                    store.compute_period_overage,
                    store.record_invoice,
                    store.project_invoice,
                    store.record_subscription_change,
                    store.record_payment_method,
                    store.send_notification,
                ],
            ),
            Worker(
                env.client,
                task_queue="bench-stripe",
                activities=[
                    customers.ensure_stripe_customer,
                    stripe.create_stripe_invoice,
                    stripe.collect_invoice,
                    stripe.attach_payment_method,
                ],
            ),
        ]
        tasks = [asyncio.create_task(w.run()) for w in workers]

        # Baseline: twelve bare timers per workflow.
        baseline_handles = [
            await env.client.start_workflow(
                TwelveTimers.run, 12, id=f"baseline:{i}:{uuid.uuid4()}", task_queue="bench"
            )
            for i in range(n)
        ]
        t0 = time.perf_counter()
        for handle in baseline_handles:
            await handle.result()
        baseline = time.perf_counter() - t0

        # Subscriptions: 12 periods billed each (the start, then 11 renewals).
        handles = []
        for i in range(n):
            handle = await env.client.start_workflow(
                SubscriptionWorkflow.run,
                SubscriptionInput(
                    subscription_id=str(uuid.uuid4()),
                    tenant_id=str(uuid.uuid4()),
                    tenant_name=f"bench {i}",
                    tenant_email=None,
                    plan=snapshot,
                    interval="month",
                    stripe_task_queue="bench-stripe",
                    actor="bench",
                    payment_method_id="pm_card_visa",
                    trial_days=0,
                    business_start="2027-01-15T00:00:00+00:00",
                ),
                id=f"subscription:bench-{i}-{uuid.uuid4()}",
                task_queue="bench",
            )
            handles.append(handle)
        subscriptions = await _run_year(env, lambda: len(gateway.charges) >= 12 * n)
        # Per-period Temporal cost of one subscription year (every run, across
        # continue-as-new), beside a workflow running as many no-op activities.
        cost = await _history_counts(env.client, handles[0].id, handles[0].first_execution_run_id)
        # The baseline runs every step (activity or local activity) as a regular activity.
        activities = cost["EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"] + cost[LOCAL_ACTIVITY]
        base = await env.client.start_workflow(
            NoopActivities.run, activities, id=f"baseline-noop:{uuid.uuid4()}", task_queue="bench"
        )
        await base.result()
        base_cost = await _history_counts(env.client, base.id, base.first_execution_run_id)
        assert len(store.invoices) == 12 * n, len(store.invoices)
        assert len(set(gateway.keys_for("create_invoice"))) == 12 * n
        for w in workers:
            await w.shutdown()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await env.shutdown()

    print(f"{'scenario':<42}{'N':>5}{'total s':>10}{'s / sub-year':>14}{'ratio':>8}")  # noqa: T201
    print(f"{'baseline: 12 bare timers':<42}{n:>5}{baseline:>10.2f}{baseline / n:>14.3f}{1:>8.1f}")  # noqa: T201
    print(  # noqa: T201
        f"{'subscription year (12 billed periods)':<42}{n:>5}{subscriptions:>10.2f}"
        f"{subscriptions / n:>14.3f}{subscriptions / baseline:>8.1f}"
    )
    print()  # noqa: T201
    header = f"{'Temporal cost per billed period':<42}{'subscription':>14}{'no-op baseline':>16}"
    print(f"{header}{'ratio':>8}")  # noqa: T201
    for label, key in (
        ("activities (on a task queue)", "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"),
        ("local activities", LOCAL_ACTIVITY),
        ("workflow tasks", "EVENT_TYPE_WORKFLOW_TASK_COMPLETED"),
        ("history events", "events"),
        ("runs (continue-as-new + 1)", "runs"),
    ):
        ours, theirs = cost[key] / 12, base_cost[key] / 12
        ratio = f"{ours / theirs:>8.2f}" if theirs else f"{'-':>8}"
        print(f"{label:<42}{ours:>14.1f}{theirs:>16.1f}{ratio}")  # noqa: T201
    kinds = sorted((k for k in cost if k.startswith("activity ")), key=lambda k: -cost[k])
    print(
        "activities per billed period: " + ", ".join(f"{k[9:]} {cost[k] / 12:.2f}" for k in kinds)
    )  # noqa: T201, E501
    local = sorted((k for k in cost if k.startswith("local ")), key=lambda k: -cost[k])
    print(
        "local activities per billed period: "
        + ", ".join(f"{k[6:]} {cost[k] / 12:.2f}" for k in local)
    )  # noqa: T201


async def _history_counts(client: Client, workflow_id: str, run_id: str | None) -> Counter[str]:
    """Event counts by type over every run of the workflow (following continue-as-new),
    with `events` and `runs` totals."""
    counts: Counter[str] = Counter()
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        counts["runs"] += 1
        run_id = None
        for event in history.events:
            counts[EventType.Name(event.event_type)] += 1
            counts["events"] += 1
            if event.HasField("marker_recorded_event_attributes"):
                marker = event.marker_recorded_event_attributes
                counts[f"marker {marker.marker_name}"] += 1
                if marker.marker_name == "core_local_activity":
                    counts[f"local {_local_activity_type(marker)}"] += 1
            if event.HasField("activity_task_scheduled_event_attributes"):
                name = event.activity_task_scheduled_event_attributes.activity_type.name
                counts[f"activity {name}"] += 1
            if event.HasField("workflow_execution_continued_as_new_event_attributes"):
                attrs = event.workflow_execution_continued_as_new_event_attributes
                run_id = attrs.new_execution_run_id
    return counts


def _local_activity_type(marker: Any) -> str:
    """The activity type a local-activity marker records (in its `data` payloads)."""
    import json

    payloads = marker.details.get("data")
    if payloads is None or not payloads.payloads:
        return "?"
    try:
        return str(json.loads(payloads.payloads[0].data).get("activity_type", "?"))
    except ValueError:
        return "?"


if __name__ == "__main__":
    from bench import stoppable

    stoppable.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 10))
