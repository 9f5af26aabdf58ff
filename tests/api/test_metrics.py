"""`/metrics` after a scripted flow: a subscription whose trial converts, a usage batch with a
duplicate, a blocked quota check, a declined renewal, a webhook, and the recovery by dunning
after a card update. The counters are scraped over HTTP from the server the API and the worker start
(`adapters.metrics.serve`), before and after, and must have moved by exactly what the flow did.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters import metrics
from adapters.db.tables import subscriptions, tenants
from adapters.stripe_fake import FakeStripeGateway
from adapters.temporal import connect_temporal
from billing.payments import StripeNotFound
from config import Settings
from services.context import Services
from tests.api.metrics_probe import MetricsProbe
from tests.api.test_billing_api import _active_standard, _until, align_clock
from tests.factories.stripe_events import (
    accept_test_webhooks,
    signed_request,
    stripe_event,
)
from tests.factories.subscriptions import make_subscription
from tests.factories.tenants import make_tenant
from tests.harness import Databases, free_port

Sample = tuple[str, tuple[tuple[str, str], ...]]


@pytest.fixture
async def scrape() -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    stop = metrics.serve("127.0.0.1", port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        stop()


async def _samples(client: httpx.AsyncClient) -> dict[Sample, float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def _moved(
    before: dict[Sample, float], after: dict[Sample, float], name: str, **labels: str
) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


@pytest.mark.usefixtures("workers")
async def test_the_counters_follow_a_scripted_flow(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
    scrape: httpx.AsyncClient,
) -> None:
    before = await _samples(scrape)

    # A subscription whose trial converts: one invoice issued and paid at the first attempt.
    tenant = await _active_standard(api, dbs, workflow_env, services)

    # A usage batch with a duplicate key, and a quota check past a hard cap.
    now = services.clock().isoformat()
    events = [
        {"metric": "api_calls", "quantity": 10, "idempotency_key": "m-1", "timestamp": now},
        {"metric": "api_calls", "quantity": 10, "idempotency_key": "m-1", "timestamp": now},
        {"metric": "api_calls", "quantity": 5, "idempotency_key": "m-2", "timestamp": now},
    ]
    batch = await api.post(
        "/api/billing/usage/batch", json={"events": events}, headers=tenant.headers
    )
    assert batch.status_code == 200, batch.text
    assert (batch.json()["accepted"], batch.json()["duplicates"]) == (2, 1)
    check = await api.get(
        "/api/billing/usage/check?metric=user_seats&quantity=26", headers=tenant.headers
    )
    assert check.status_code == 402, check.text
    reason = check.json()["reason"]

    # A webhook Stripe signed (no action needed: stored and settled as ignored at once).
    accept_test_webhooks(services)
    hook_event = stripe_event("customer.updated", {"id": "cus_x"})
    body, headers = signed_request(hook_event)
    hook = await api.post("/api/billing/webhooks/stripe", content=body, headers=headers)
    assert hook.status_code == 200, hook.text

    # The renewal's collection is declined once; a new card makes dunning retry, and it is paid.
    subscription = (await api.get("/api/billing/subscription", headers=tenant.headers)).json()
    account = (await api.get("/api/billing/account", headers=tenant.headers)).json()
    stripe_fake.decline_next(account["stripe_customer_id"])
    await workflow_env.sleep(timedelta(days=31))
    await _until(
        api,
        tenant,
        lambda b: len(b["data"]) == 2 and b["data"][0]["status"] != "draft",
        "/api/billing/invoices",
    )
    await _until(api, tenant, lambda b: b["status"] == "past_due")
    await align_clock(services, workflow_env)
    # A new card: dunning retries at once, and the retry is paid.
    card = await api.post(
        "/api/billing/payment-methods",
        json={"payment_method_id": "pm_card_visa"},
        headers=tenant.headers,
    )
    assert card.status_code in (200, 201), card.text
    await _until(
        api,
        tenant,
        lambda b: [i["status"] for i in b["data"]] == ["paid", "paid"],
        "/api/billing/invoices",
    )
    # The recovery is recorded after the invoice (dunning finishes, then tells the
    # subscription): wait for it too before reading the counters.
    await _until(api, tenant, lambda b: b["status"] == "active")
    assert subscription["plan_code"] == "standard"

    after = await _samples(scrape)
    moved = lambda name, **labels: _moved(before, after, name, **labels)  # noqa: E731
    assert moved("billing_usage_events_total", metric="api_calls", outcome="accepted") == 2
    assert moved("billing_usage_events_total", metric="api_calls", outcome="duplicate") == 1
    assert moved("billing_quota_checks_total", metric="user_seats", outcome=reason) == 1
    assert moved("billing_webhooks_received_total", type="customer.updated", result="stored") == 1
    assert moved("billing_webhooks_processed_total", type="customer.updated", status="ignored") == 1
    assert moved("billing_invoices_issued_total", currency="usd", reason="subscription_create") == 1
    assert moved("billing_invoices_issued_total", currency="usd", reason="subscription_cycle") == 1
    assert (
        moved("billing_invoice_amount_minor_total", currency="usd", reason="subscription_create")
        == 4900
    )
    assert moved("billing_payment_attempts_total", source="collection", outcome="paid") == 1
    assert moved("billing_payment_attempts_total", source="collection", outcome="declined") == 1
    assert moved("billing_payment_attempts_total", source="dunning", outcome="paid") == 1
    # The first invoice paid at collection; the renewal failed there, and dunning recovered it
    # at its first attempt (attempt 2 of the invoice), which the new card started.
    assert moved("billing_invoice_outcomes_total", source="subscription", outcome="paid") == 1
    assert (
        moved("billing_invoice_outcomes_total", source="subscription", outcome="payment_failed")
        == 1
    )
    assert moved("billing_invoice_outcomes_total", source="dunning", outcome="paid") == 1
    assert moved("billing_dunning_attempts_total", trigger="new_card", outcome="succeeded") == 1
    assert moved("billing_dunning_recoveries_total", attempt="2", cause="new_card") == 1
    assert moved("billing_subscription_changes_total", kind="trial_started") == 1
    assert moved("billing_subscription_changes_total", kind="payment_failed") == 1
    assert moved("billing_subscription_changes_total", kind="payment_recovered") == 1
    assert (
        moved(
            "billing_http_requests_total",
            route="/api/billing/usage/batch",
            method="POST",
            status="200",
        )
        == 1
    )
    assert (
        moved(
            "billing_http_request_duration_seconds_count",
            route="/api/billing/usage/batch",
            method="POST",
        )
        == 1
    )


async def test_the_temporal_sdk_serves_its_own_metrics(
    workflow_env: WorkflowEnvironment, settings: Settings
) -> None:
    """`connect_temporal(..., sdk_metrics_port=...)`: the SDK's runtime serves its metrics
    (here after one workflow ran on a worker of that client)."""
    port = free_port()
    target = workflow_env.client.service_client.config.target_host
    ours = settings.model_copy(
        update={"temporal_address": target, "temporal_namespace": workflow_env.client.namespace}
    )
    client = await connect_temporal(ours, sdk_metrics_port=port)
    queue = f"probe-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=queue, workflows=[MetricsProbe]):
        result = await client.execute_workflow(
            MetricsProbe.run, id=f"probe-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
    assert result == "ok"
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    assert "temporal_workflow_completed" in text
    assert "temporal_request" in text


async def test_the_gauges_follow_postgres(dbs: Databases) -> None:
    """`refresh_once`, what the worker runs every `metrics_refresh_seconds`: subscriptions by
    plan and status, suspended tenants, and a label value that disappears goes back to 0."""
    tenant = await make_tenant(dbs)
    subscription_id = await make_subscription(dbs, tenant.id, status="past_due")
    await metrics.refresh_once(dbs.worker)
    assert (
        REGISTRY.get_sample_value(
            "billing_subscriptions", {"plan": "standard", "status": "past_due"}
        )
        == 1
    )
    assert REGISTRY.get_sample_value("billing_suspended_tenants") == 0
    assert REGISTRY.get_sample_value("billing_webhook_inbox_lag_seconds") == 0
    async with dbs.admin.transaction() as conn:
        await conn.execute(
            update(subscriptions)
            .where(subscriptions.c.id == subscription_id)
            .values(status="active")
        )
        await conn.execute(
            update(tenants).where(tenants.c.id == tenant.id).values(access_status="suspended")
        )
    await metrics.refresh_once(dbs.worker)
    assert (
        REGISTRY.get_sample_value(
            "billing_subscriptions", {"plan": "standard", "status": "past_due"}
        )
        == 0
    )
    assert (
        REGISTRY.get_sample_value("billing_subscriptions", {"plan": "standard", "status": "active"})
        == 1
    )
    assert REGISTRY.get_sample_value("billing_suspended_tenants") == 1


async def test_stripe_calls_are_counted_by_operation_and_result() -> None:
    gateway = metrics.MeteredGateway(FakeStripeGateway())

    def count(operation: str, result: str) -> float:
        value = REGISTRY.get_sample_value(
            "billing_stripe_calls_total", {"operation": operation, "result": result}
        )
        return value or 0.0

    ok, missing = count("ensure_customer", "ok"), count("retrieve_invoice", "stripe_not_found")
    await gateway.ensure_customer("t-1", None, "Acme", idempotency_key="k-1")
    with pytest.raises(StripeNotFound):
        await gateway.retrieve_invoice("in_nope")
    assert count("ensure_customer", "ok") == ok + 1
    assert count("retrieve_invoice", "stripe_not_found") == missing + 1
    assert REGISTRY.get_sample_value(
        "billing_stripe_call_duration_seconds_count", {"operation": "ensure_customer"}
    )
