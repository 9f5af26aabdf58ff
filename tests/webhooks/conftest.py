"""Webhook test fixtures: settings with signing secrets and a short retry schedule, and the real
worker registration plus the stand-in `subscription` workflow."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.notifications import NotificationActivities
from adapters.db.tables import plans, subscriptions
from adapters.dispatch import DispatchConfig, Dispatcher
from adapters.notification_sender import HttpxNotificationSender
from adapters.stripe_fake import FakeStripeGateway
from billing.payments import StripeGateway
from config import Settings
from services.context import Services
from tests.factories.stripe_events import OLD_WEBHOOK_SECRET, TEST_WEBHOOK_SECRET
from tests.factories.tenants import make_tenant
from tests.harness import Databases
from tests.webhooks.standin import (
    NotifyingWorkflow,
    StandinInput,
    StandinState,
    StandinSubscriptionWorkflow,
)
from worker import build_workers
from workflows.notification_delivery import NotificationDeliveryWorkflow
from workflows.notification_io import SendNotificationInput
from workflows.stripe_event import StripeEventWorkflow


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "stripe_webhook_secrets": [SecretStr(TEST_WEBHOOK_SECRET)],
            "webhook_max_attempts": 3,
            "webhook_initial_backoff_seconds": 1.0,
            "webhook_max_backoff_seconds": 10.0,
            "notification_max_attempts": 3,
            "notification_initial_backoff_seconds": 1.0,
        }
    )


@pytest.fixture
def rotated_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "stripe_webhook_secrets": [
                SecretStr(TEST_WEBHOOK_SECRET),
                SecretStr(OLD_WEBHOOK_SECRET),
            ]
        }
    )


async def run_workers(
    client: Client, dbs: Databases, gateway: StripeGateway, settings: Settings
) -> tuple[list[Worker], list[asyncio.Task[None]]]:
    built = build_workers(
        client,
        db=dbs.worker,
        gateway=gateway,
        task_queue=settings.task_queue,
        stripe_task_queue=settings.stripe_task_queue,
        stripe_activities_per_second=settings.stripe_activities_per_second,
        dispatch=DispatchConfig.from_settings(settings),
        # The real subscription workflow is issue 3's; a stand-in records what it is sent.
        workflows=[
            StandinSubscriptionWorkflow,
            NotifyingWorkflow,
            StripeEventWorkflow,
            NotificationDeliveryWorkflow,
        ],
    )
    return built, [asyncio.create_task(w.run()) for w in built]


async def stop_workers(built: list[Worker], tasks: list[asyncio.Task[None]]) -> None:
    await asyncio.gather(*(w.shutdown() for w in built), return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def event_workers(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
) -> AsyncIterator[list[Worker]]:
    built, tasks = await run_workers(workflow_env.client, dbs, stripe_fake, settings)
    yield built
    await stop_workers(built, tasks)


@dataclass
class Subscriber:
    """A tenant with a stand-in subscription workflow and a Stripe customer in the fake."""

    tenant_id: str
    subscription_id: str
    customer_id: str
    handle: WorkflowHandle[StandinSubscriptionWorkflow, None]

    async def state(self) -> StandinState:
        return await self.handle.query(StandinSubscriptionWorkflow.state)


async def make_subscriber(
    client: Client, dbs: Databases, gateway: StripeGateway, settings: Settings
) -> Subscriber:
    tenant = await make_tenant(dbs)
    customer = await gateway.ensure_customer(
        str(tenant.id), None, tenant.name, f"customer:{tenant.id}"
    )
    subscription_id = str(uuid.uuid4())
    async with dbs.admin.transaction() as conn:
        plan = (await conn.execute(select(plans.c.id, plans.c.code).limit(1))).one()
        await conn.execute(
            subscriptions.insert().values(
                id=uuid.UUID(subscription_id),
                tenant_id=tenant.id,
                plan_id=plan.id,
                plan_code=plan.code,
                interval="month",
                currency="usd",
                status="active",
                workflow_id=f"subscription:{subscription_id}",
            )
        )
    handle = await client.start_workflow(
        StandinSubscriptionWorkflow.run,
        StandinInput(subscription_id),
        id=f"subscription:{subscription_id}",
        task_queue=settings.task_queue,
    )
    return Subscriber(str(tenant.id), subscription_id, customer.id, handle)


@pytest.fixture
async def subscriber(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
    event_workers: list[Worker],
) -> AsyncIterator[Subscriber]:
    sub = await make_subscriber(workflow_env.client, dbs, stripe_fake, settings)
    yield sub
    await sub.handle.terminate("test over")


SendFn = Callable[[str, str], Awaitable[list[str]]]


@pytest.fixture
def send(dbs: Databases, workflow_env: WorkflowEnvironment, settings: Settings) -> SendFn:
    """What another workflow's `send_notification` activity call does (5 attempts)."""
    settings = settings.model_copy(update={"notification_max_attempts": 5})
    activities = NotificationActivities(
        dbs.worker,
        HttpxNotificationSender(timeout_seconds=5),
        Dispatcher(dbs.worker, workflow_env.client, DispatchConfig.from_settings(settings)),
    )

    async def send(tenant_id: str, message_id: str) -> list[str]:
        result = await activities.send_notification(
            SendNotificationInput(
                tenant_id=tenant_id,
                event_type="invoice.paid",
                message_id=message_id,
                payload={"invoice_id": "inv_1", "amount_paid": 2000, "currency": "usd"},
            )
        )
        return result.delivery_ids

    return send


async def settle_dispatch(services: Services) -> None:
    """Wait until the API's dispatch queue has tried to start every workflow of the webhooks
    accepted so far (the answer does not wait for it; tests that look at the workflow next
    do)."""
    from api.routes.webhooks import dispatch_queue

    await dispatch_queue(services).drain()


async def settle_api(api: httpx.AsyncClient) -> None:
    """`settle_dispatch` for the app behind an in-process test client."""
    transport = api._transport
    assert isinstance(transport, httpx.ASGITransport)
    await settle_dispatch(transport.app.state.services)  # type: ignore[attr-defined]
