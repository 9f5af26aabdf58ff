"""End to end: localstripe sends a real signed webhook to the API served on 127.0.0.1; it is
verified, stored, and the `stripe_event` workflow signals the right subscription workflow with
the invoice as re-read over HTTP from localstripe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from sqlalchemy import select
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from adapters.db.tables import webhook_events
from adapters.stripe_sdk import StripeSdkGateway
from api.app import create_app
from billing.catalog import Catalog
from billing.payments import InvoiceLine
from config import Settings
from devstack.localstripe import LocalStripeServer, free_port
from services.context import Services
from tests.factories.stripe_events import TEST_WEBHOOK_SECRET
from tests.harness import Databases
from tests.loopback import serve_on_loopback
from tests.webhooks.conftest import make_subscriber, run_workers, stop_workers
from workflows.stripe_event_io import StripeEventResult

LOCALSTRIPE_API_KEY = "sk_test_localstripe"

pytestmark = pytest.mark.filterwarnings(
    # stripe-python's HTTPXClient posts form bodies with httpx's deprecated `data=<str>`.
    "ignore:Use 'content=<...>' to upload raw bytes/text content:DeprecationWarning"
)


@pytest.fixture
def localstripe_server() -> Iterator[LocalStripeServer]:
    """Our own localstripe: its webhook registry is process-global."""
    server = LocalStripeServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def sdk(localstripe_server: LocalStripeServer) -> AsyncIterator[StripeSdkGateway]:
    async with StripeSdkGateway(LOCALSTRIPE_API_KEY, api_base=localstripe_server.url) as gateway:
        yield gateway


async def test_localstripe_webhook_is_verified_stored_and_signals_the_subscription(
    localstripe_server: LocalStripeServer,
    sdk: StripeSdkGateway,
    settings: Settings,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    catalog: Catalog,
) -> None:
    client = workflow_env.client
    services = Services(settings, dbs.app, dbs.worker, client, sdk, catalog)
    workers, tasks = await run_workers(client, dbs, sdk, settings)
    try:
        sub = await make_subscriber(client, dbs, sdk, settings)
        await sdk.attach_payment_method(sub.customer_id, "pm_card_visa", f"pm:{sub.tenant_id}")
        async with serve_on_loopback(create_app(settings, services=services)) as base:
            async with httpx.AsyncClient() as http:
                configured = await http.post(
                    f"{localstripe_server.url}/_config/webhooks/billing",
                    data={
                        "url": f"{base}/api/billing/webhooks/stripe",
                        "secret": TEST_WEBHOOK_SECRET,
                        "events[]": ["invoice.payment_succeeded"],
                    },
                )
                assert configured.status_code == 200, configured.text
            invoice_id = str(uuid.uuid4())
            invoice = await sdk.create_invoice(
                sub.customer_id,
                [InvoiceLine("Standard plan", 4900, "usd")],
                {
                    "invoice_id": invoice_id,
                    "tenant_id": sub.tenant_id,
                    "subscription_id": sub.subscription_id,
                },
                f"invoice:{invoice_id}",
            )
            assert (await sdk.pay_invoice(invoice.id, f"pay:{invoice_id}:1")).succeeded
            event_id = await _wait_for_inbox_row(dbs, "invoice.payment_succeeded")
        handle = client.get_workflow_handle(
            f"stripe-event:{event_id}", result_type=StripeEventResult
        )
        for _ in range(100):  # the answer does not wait for the workflow's start
            try:
                await handle.describe()
                break
            except RPCError:
                await asyncio.sleep(0.05)
        result = await handle.result()
        assert result.status == "processed"
        [applied] = (await sub.state()).applied
        assert (applied.event_id, applied.event_type) == (event_id, "invoice.payment_succeeded")
        assert (applied.invoice_id, applied.stripe_invoice_id) == (invoice_id, invoice.id)
        assert (applied.invoice_status, applied.amount_paid) == ("paid", 4900)
        await sub.handle.terminate("test over")
    finally:
        await stop_workers(workers, tasks)


async def _wait_for_inbox_row(dbs: Databases, event_type: str) -> str:
    """localstripe sends webhooks a second after the change, from its own event loop."""
    for _ in range(300):
        async with dbs.worker.transaction() as conn:
            event_id = (
                await conn.execute(
                    select(webhook_events.c.stripe_event_id).where(
                        webhook_events.c.type == event_type
                    )
                )
            ).scalar_one_or_none()
        if event_id is not None:
            return str(event_id)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event_type} webhook reached the inbox")
