"""One trace across the Temporal boundary (ADR 0011): an API request, the workflow update it
sends and the activity the update runs share a trace id; so do a Stripe webhook and the signal
its stripe_event workflow sends to the subscription. Spans go to an in-memory exporter through
the same `Tracing` the API and the worker build from `BILLING_OTLP_ENDPOINT`."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import opentelemetry.trace
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from adapters.stripe_fake import FakeStripeGateway
from adapters.tracing import Tracing, quiet_evicted_workflow_detach
from api.app import create_app
from billing.payments import InvoiceLine
from config import Settings
from services.context import Services
from tests.api.test_billing_api import SUB, subscribe_with_card
from tests.factories.stripe_events import (
    TEST_WEBHOOK_SECRET,
    invoice_object,
    signed_request,
    stripe_event,
)
from tests.harness import Databases, start_dev_server_env
from worker import build_workers

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
async def workflow_env() -> AsyncIterator[WorkflowEnvironment]:
    """The dev server, not the time-skipping one: the Java test server drops the headers of a
    signal sent from a workflow, so the trace context of an external signal does not arrive
    there (it does on a real server)."""
    env = await start_dev_server_env()
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def tracing() -> Tracing:
    """Installed once for the test process (the plugin reads the global provider); no other
    test's client carries the plugin, so no other test makes spans."""
    built = Tracing.with_exporter(_EXPORTER, "billing-test", batch=False)
    opentelemetry.trace.set_tracer_provider(built.provider)
    quiet_evicted_workflow_detach()
    return built


@pytest.fixture
def exporter(tracing: Tracing) -> InMemorySpanExporter:
    _EXPORTER.clear()
    return _EXPORTER


@pytest.fixture
async def traced(
    settings: Settings,
    services: Services,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    stripe_fake: FakeStripeGateway,
    tracing: Tracing,
) -> AsyncIterator[httpx.AsyncClient]:
    """The API and the real workers on one Temporal client that carries the tracing
    interceptor, as `connect_temporal(..., interceptors=...)` builds it in both processes."""
    client = Client(**{**workflow_env.client.config(), "plugins": tracing.temporal_plugins()})
    services.temporal = client
    services.settings = settings.model_copy(
        update={"stripe_webhook_secrets": [SecretStr(TEST_WEBHOOK_SECRET)]}
    )
    built = build_workers(
        client,
        db=dbs.worker,
        gateway=stripe_fake,
        task_queue=settings.task_queue,
        stripe_task_queue=settings.stripe_task_queue,
        stripe_activities_per_second=settings.stripe_activities_per_second,
    )
    runs = [asyncio.create_task(w.run()) for w in built]
    app = create_app(services.settings, services=services, tracing=tracing)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
            yield api
    finally:
        await asyncio.gather(*(w.shutdown() for w in built), return_exceptions=True)
        await asyncio.gather(*runs, return_exceptions=True)


async def _spans(
    exporter: InMemorySpanExporter, ready: Callable[[list[ReadableSpan]], bool]
) -> list[ReadableSpan]:
    for _ in range(200):
        spans = list(exporter.get_finished_spans())
        if ready(spans):
            return spans
        await asyncio.sleep(0.05)
    names = sorted({s.name for s in exporter.get_finished_spans()})
    raise AssertionError(f"spans never arrived; have {names}")


def _trace_of(spans: list[ReadableSpan], name: str) -> set[int]:
    return {s.context.trace_id for s in spans if s.name == name and s.context is not None}


async def test_an_api_command_its_update_and_activity_share_one_trace(
    traced: httpx.AsyncClient, dbs: Databases, exporter: InMemorySpanExporter
) -> None:
    tenant = await subscribe_with_card(traced, dbs)
    exporter.clear()

    changed = await traced.put(SUB, json={"plan_code": "enterprise"}, headers=tenant.headers)
    assert changed.status_code == 200, changed.text

    expected = {
        "PUT /api/billing/subscription",
        "StartWorkflowUpdate:change_plan",
        "HandleUpdate:change_plan",
        "RunActivity:record_subscription_change",
    }

    def complete(spans: list[ReadableSpan]) -> bool:
        return expected <= {s.name for s in spans}

    spans = await _spans(exporter, complete)
    request = _trace_of(spans, "PUT /api/billing/subscription")
    assert len(request) == 1, sorted({s.name for s in spans})
    (trace_id,) = request
    in_trace = {s.name for s in spans if s.context and s.context.trace_id == trace_id}
    assert "StartWorkflowUpdate:change_plan" in in_trace
    assert "HandleUpdate:change_plan" in in_trace
    assert "RunActivity:record_subscription_change" in in_trace


async def test_a_webhook_and_the_signal_it_becomes_share_one_trace(
    traced: httpx.AsyncClient,
    dbs: Databases,
    exporter: InMemorySpanExporter,
    stripe_fake: FakeStripeGateway,
) -> None:
    tenant = await subscribe_with_card(traced, dbs)
    subscription = (await traced.get(SUB, headers=tenant.headers)).json()
    account = (await traced.get("/api/billing/account", headers=tenant.headers)).json()
    invoice_id = str(uuid.uuid4())
    invoice = await stripe_fake.create_invoice(
        account["stripe_customer_id"],
        [InvoiceLine("Services", 2000, "usd")],
        {
            "invoice_id": invoice_id,
            "tenant_id": str(tenant.id),
            "subscription_id": subscription["id"],
        },
        f"invoice:{invoice_id}",
    )
    exporter.clear()

    event = stripe_event(
        "invoice.finalized",
        invoice_object(
            invoice.id,
            customer=account["stripe_customer_id"],
            status="open",
            tenant_id=str(tenant.id),
            subscription_id=subscription["id"],
            invoice_id=invoice_id,
        ),
    )
    body, headers = signed_request(event)
    hook = await traced.post("/api/billing/webhooks/stripe", content=body, headers=headers)
    assert hook.status_code == 200, hook.text

    expected = {
        "POST /api/billing/webhooks/stripe",
        "StartWorkflow:stripe_event",
        "SignalExternalWorkflow:stripe_event",
        "HandleSignal:stripe_event",
    }

    def complete(spans: list[ReadableSpan]) -> bool:
        # Spans end in their own order (the target's handler can finish before the sender's
        # signal span): wait for all of them.
        return expected <= {s.name for s in spans}

    spans = await _spans(exporter, complete)
    request = _trace_of(spans, "POST /api/billing/webhooks/stripe")
    assert len(request) == 1, sorted({s.name for s in spans})
    (trace_id,) = request
    in_trace = {s.name for s in spans if s.context and s.context.trace_id == trace_id}
    assert "StartWorkflow:stripe_event" in in_trace
    assert "SignalExternalWorkflow:stripe_event" in in_trace
    assert "HandleSignal:stripe_event" in in_trace
