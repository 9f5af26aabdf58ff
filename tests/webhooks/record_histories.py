"""Records the workflow histories replayed by tests/replay (run explicitly, then commit them):

    .venv/bin/pytest tests/webhooks/record_histories.py

Re-record only on purpose: a change that breaks replay of these histories breaks running
workflows too (then use `workflow.patched`)."""

from __future__ import annotations

from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from adapters.stripe_fake import FakeStripeGateway
from tests.factories.tenants import make_tenant
from tests.harness import Databases
from tests.loopback import serve_on_loopback
from tests.webhooks.conftest import SendFn, Subscriber
from tests.webhooks.test_notifications import Receiver, register
from tests.webhooks.test_stripe_webhooks import (
    invoice_event,
    open_invoice,
    post_event,
    processed,
)
from workflows.notification_io import NotificationDeliveryResult

HISTORIES = Path(__file__).parent.parent / "replay" / "histories"


async def test_record(
    api: httpx.AsyncClient,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    subscriber: Subscriber,
    workflow_env: WorkflowEnvironment,
    send: SendFn,
) -> None:
    client = workflow_env.client
    stripe_invoice_id, invoice_id = await open_invoice(stripe_fake, subscriber)
    ok = invoice_event("invoice.paid", subscriber, stripe_invoice_id, invoice_id, "paid")
    await post_event(api, ok)
    await processed(client, ok["id"])
    stripe_fake.fail_next("retrieve_invoice", times=3)
    dead = invoice_event(
        "invoice.payment_failed", subscriber, stripe_invoice_id, invoice_id, "open"
    )
    await post_event(api, dead)
    await processed(client, dead["id"])
    HISTORIES.mkdir(parents=True, exist_ok=True)
    for name, event in (("stripe_event_processed", ok), ("stripe_event_dead_lettered", dead)):
        history = await client.get_workflow_handle(f"stripe-event:{event['id']}").fetch_history()
        (HISTORIES / f"{name}.json").write_text(history.to_json())

    tenant = await make_tenant(dbs)
    receiver = Receiver(failures=1)
    async with serve_on_loopback(receiver.app()) as base:
        await register(api, tenant.headers, f"{base}/hooks")
        [delivery_id] = await send(str(tenant.id), "invoice.paid:recorded")
        handle = client.get_workflow_handle(
            f"notification:{delivery_id}", result_type=NotificationDeliveryResult
        )
        await handle.result()
    history = await handle.fetch_history()
    (HISTORIES / "notification_delivery_retried.json").write_text(history.to_json())
