"""Composition root of the worker process: builds adapters once and registers every workflow and
activity. Tests call `build_workers` with fakes so registration never drifts between them."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.billing_store import BillingStore
from activities.customers import CustomerActivities
from activities.stripe_billing import StripeBillingActivities
from activities.subscription_store import SubscriptionStore
from adapters.db.session import Database
from billing.payments import StripeGateway
from config import WORKER_ROLE, Settings
from workflows.subscription import SubscriptionWorkflow

log = logging.getLogger("billing.worker")

WORKFLOWS: Sequence[type] = (SubscriptionWorkflow,)


def main_queue_activities(db: Database) -> list[Callable[..., Any]]:
    store = SubscriptionStore(db)
    billing = BillingStore(db)
    return [
        store.record_stripe_customer,
        store.project_subscription,
        billing.read_period_usage,
        billing.record_invoice,
        billing.project_invoice,
        billing.record_subscription_change,
        billing.record_payment_method,
    ]


def stripe_queue_activities(gateway: StripeGateway) -> list[Callable[..., Any]]:
    customers = CustomerActivities(gateway)
    invoicing = StripeBillingActivities(gateway)
    return [
        customers.ensure_stripe_customer,
        invoicing.create_stripe_invoice,
        invoicing.collect_invoice,
        invoicing.retrieve_stripe_invoice,
        invoicing.void_stripe_invoice,
        invoicing.attach_payment_method,
    ]


def build_workers(
    client: Client,
    *,
    db: Database,
    gateway: StripeGateway,
    task_queue: str,
    stripe_task_queue: str,
    stripe_activities_per_second: float,
    max_cached_workflows: int = 1000,
) -> list[Worker]:
    return [
        Worker(
            client,
            task_queue=task_queue,
            workflows=list(WORKFLOWS),
            activities=main_queue_activities(db),
            max_cached_workflows=max_cached_workflows,
        ),
        # Stripe calls get their own queue so the server can cap their rate for every worker
        # together: a billing day with thousands of renewals queues instead of hitting 429s.
        Worker(
            client,
            task_queue=stripe_task_queue,
            activities=stripe_queue_activities(gateway),
            max_task_queue_activities_per_second=stripe_activities_per_second,
        ),
    ]


def build_gateway(settings: Settings) -> StripeGateway:
    from adapters.stripe_sdk import StripeSdkGateway

    if settings.stripe_api_key is None:
        raise SystemExit("BILLING_STRIPE_API_KEY is not set (run through `billing dev`)")
    return StripeSdkGateway(
        api_key=settings.stripe_api_key.get_secret_value(), api_base=settings.stripe_api_base
    )


async def connect_temporal(settings: Settings) -> Client:
    if settings.temporal_address is None:
        raise SystemExit("BILLING_TEMPORAL_ADDRESS is not set (run through `billing dev`)")
    return await Client.connect(settings.temporal_address, namespace=settings.temporal_namespace)


async def run_worker(settings: Settings) -> None:
    client = await connect_temporal(settings)
    db = Database(settings.role_url(WORKER_ROLE), pool_size=settings.db_pool_size)
    workers = build_workers(
        client,
        db=db,
        gateway=build_gateway(settings),
        task_queue=settings.task_queue,
        stripe_task_queue=settings.stripe_task_queue,
        stripe_activities_per_second=settings.stripe_activities_per_second,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    runs = [asyncio.create_task(w.run()) for w in workers]
    log.warning("worker polling %s and %s", settings.task_queue, settings.stripe_task_queue)
    try:
        done, _ = await asyncio.wait(
            [*runs, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        for task in done:
            if task in runs and task.exception():
                raise task.exception()  # type: ignore[misc]
    finally:
        # Graceful: running activities finish (or time out) before the process exits.
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
        await db.dispose()


def main(settings: Settings) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    asyncio.run(run_worker(settings))
