"""A renewal's Postgres steps run as local activities (ADR 0025): only the Stripe calls are
scheduled on a task queue, so a billing day costs the server two activities per renewal
instead of nine, and the renewal still bills once."""

from __future__ import annotations

from collections import Counter

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment

from adapters.stripe_fake import FakeStripeGateway
from config import Settings
from tests.factories.subscription_workflows import make_subscription
from tests.harness import Databases
from tests.replay.recording import record
from tests.workflows.helpers import db_invoices, start, to_next_boundary, until

pytestmark = pytest.mark.usefixtures("workers")


async def test_a_renewal_schedules_only_its_stripe_calls_and_bills_once(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    settings: Settings,
    task_queues: tuple[str, str],
    stripe_fake: FakeStripeGateway,
) -> None:
    sub = await make_subscription(
        dbs, task_queues=task_queues, business_start="2027-03-15T12:00:00+00:00"
    )
    handle = await start(workflow_env, sub, settings.task_queue)
    await until(workflow_env, handle, lambda s: s.invoices_issued == 1 and not s.open_invoices)
    await to_next_boundary(workflow_env, handle)
    await until(workflow_env, handle, lambda s: s.invoices_issued == 2 and not s.open_invoices)

    # The first run: sign-up, first invoice, then the renewal, which ends it (continue-as-new).
    first = workflow_env.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
    scheduled: Counter[str] = Counter()
    markers: Counter[str] = Counter()
    for event in (await first.fetch_history()).events:
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[attrs.activity_type.name] += 1
            assert attrs.task_queue.name == sub.input.stripe_task_queue
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            markers[event.marker_recorded_event_attributes.marker_name] += 1
    # Stripe: the customer, the card, then per invoice its mirror and its collection.
    assert scheduled == {
        "ensure_stripe_customer": 1,
        "attach_payment_method": 1,
        "create_stripe_invoice": 2,
        "collect_invoice": 2,
    }
    assert markers["core_local_activity"] >= 10  # every Postgres step of both invoices
    invoices = await db_invoices(dbs, sub.input.subscription_id)
    assert sorted(i["billing_reason"] for i in invoices) == [
        "subscription_create",
        "subscription_cycle",
    ]
    assert all(i["status"] == "paid" for i in invoices)
    assert len(set(stripe_fake.keys_for("create_invoice"))) == 2
    assert len(stripe_fake.charges) == 2
    await record(first, "subscription_local_db_steps")
