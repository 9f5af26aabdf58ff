"""The billing API end to end: Postgres, the real worker registration, the Stripe fake and the
time-skipping server. Commands go through workflow Updates; reads come from Postgres."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx
import pytest
from pypdf import PdfReader
from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.api_keys import Scope
from adapters.stripe_fake import FakeStripeGateway
from billing.money import format_amount
from services.context import Services
from tests.factories.subscription_workflows import make_subscription
from tests.factories.tenants import TenantWithKey, make_tenant
from tests.harness import Databases
from workflows.subscription import SubscriptionWorkflow

SUB = "/api/billing/subscription"


async def align_clock(services: Services, env: WorkflowEnvironment) -> None:
    """The API's clock follows the time-skipping server's (which runs ahead of the wall)."""
    offset = await env.get_current_time() - datetime.now(UTC)
    services.clock = lambda: datetime.now(UTC) + offset


async def _until(api: httpx.AsyncClient, tenant: TenantWithKey, predicate, path: str = SUB):  # type: ignore[no-untyped-def]
    body = None
    for _ in range(200):
        response = await api.get(path, headers=tenant.headers)
        body = response.json()
        if response.status_code == 200 and predicate(body):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"never matched: {body}")


async def subscribe_with_card(
    api: httpx.AsyncClient, dbs: Databases, plan_code: str = "standard"
) -> TenantWithKey:
    """A new tenant subscribed with `pm_card_visa`, its workflow started (status trialing or
    active, as the plan says)."""
    tenant = await make_tenant(dbs)
    created = await api.post(
        SUB, json={"plan_code": plan_code, "payment_method_id": "pm_card_visa"},
        headers=tenant.headers,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    await _until(api, tenant, lambda b: b["status"] in ("trialing", "active"))
    return tenant


async def _active_standard(
    api: httpx.AsyncClient, dbs: Databases, env: WorkflowEnvironment, services: Services
) -> TenantWithKey:
    """A tenant on Standard whose 14-day trial has converted (one paid invoice)."""
    tenant = await subscribe_with_card(api, dbs)
    await env.sleep(timedelta(days=14, hours=1))
    await _until(api, tenant, lambda b: b["status"] == "active")
    await _until(
        api,
        tenant,
        lambda b: len(b["data"]) == 1 and b["data"][0]["status"] == "paid",
        "/api/billing/invoices",
    )
    await align_clock(services, env)
    return tenant


@pytest.mark.usefixtures("workers")
async def test_upgrade_bills_the_preview_and_invoices_read_back(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
) -> None:
    tenant = await _active_standard(api, dbs, workflow_env, services)
    upcoming = await api.get("/api/billing/invoices/upcoming", headers=tenant.headers)
    assert upcoming.status_code == 200, upcoming.text
    assert upcoming.json()["next_invoice_total"] == 4900

    await workflow_env.sleep(timedelta(days=10))
    await align_clock(services, workflow_env)
    preview = await api.post(
        f"{SUB}/preview", json={"plan_code": "enterprise"}, headers=tenant.headers
    )
    assert preview.status_code == 200, preview.text
    p = preview.json()
    assert p["kind"] == "upgrade"
    assert [line["kind"] for line in p["lines"]] == ["proration_credit", "proration_charge"]
    # About 20 of 30 days remain: credit ~2/3 of 4900, charge ~2/3 of 49900.
    assert -3400 < p["lines"][0]["amount"] < -3200
    assert 33200 < p["lines"][1]["amount"] < 34000
    assert p["total"] == p["lines"][0]["amount"] + p["lines"][1]["amount"]

    changed = await api.put(
        SUB,
        json={"plan_code": "enterprise", "proration_date": p["proration_date"]},
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    c = changed.json()
    assert c["lines"] == p["lines"]
    assert c["invoice_total"] == p["total"]
    assert stripe_fake.charges[-1].amount == p["total"]

    await _until(api, tenant, lambda b: b["plan_code"] == "enterprise")
    page = await _until(
        api,
        tenant,
        lambda b: len(b["data"]) == 1 and b["next_cursor"],
        "/api/billing/invoices?limit=1",
    )
    newest = page["data"][0]
    assert newest["billing_reason"] == "subscription_update"
    assert newest["total"] == p["total"]
    second = (
        await api.get(
            f"/api/billing/invoices?limit=1&cursor={page['next_cursor']}", headers=tenant.headers
        )
    ).json()
    assert [i["billing_reason"] for i in second["data"]] == ["subscription_create"]
    assert second["next_cursor"] is None

    detail = await api.get(f"/api/billing/invoices/{newest['id']}", headers=tenant.headers)
    assert detail.status_code == 200
    assert [i["amount"] for i in detail.json()["items"]] == [line["amount"] for line in p["lines"]]
    # Numbered at finalisation, in order: the sign-up invoice first, then the upgrade's.
    year = newest["period_start"][:4]
    assert second["data"][0]["number"] == f"INV-{second['data'][0]['period_start'][:4]}-000001"
    assert newest["number"] == f"INV-{year}-000002"
    # The engine's own PDF (the Stripe fake publishes no document): number, lines, total.
    pdf = await api.get(f"/api/billing/invoices/{newest['id']}/pdf", headers=tenant.headers)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert f'filename="{newest["number"]}.pdf"' in pdf.headers["content-disposition"]
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert f"Invoice {newest['number']}" in text
    assert all(item["description"][:60] in text for item in detail.json()["items"])
    assert format_amount(newest["total"], "usd") in text
    again = await api.get(f"/api/billing/invoices/{newest['id']}/pdf", headers=tenant.headers)
    assert again.content == pdf.content

    history = await api.get(f"{SUB}/history", headers=tenant.headers)
    assert [h["kind"] for h in history.json()] == [
        "trial_started",
        "trial_converted",
        "plan_changed",
    ]
    assert history.json()[-1]["actor"].startswith("api_key:")

    # Another tenant sees none of it.
    other = await make_tenant(dbs)
    for path in (
        f"/api/billing/invoices/{newest['id']}",
        f"/api/billing/invoices/{newest['id']}/pdf",
    ):
        assert (await api.get(path, headers=other.headers)).status_code == 404
    assert (await api.get("/api/billing/invoices", headers=other.headers)).json()["data"] == []


@pytest.mark.usefixtures("workers")
async def test_cancel_undo_pause_resume_and_reactivate(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
) -> None:
    tenant = await _active_standard(api, dbs, workflow_env, services)
    scheduled = await api.delete(SUB, headers=tenant.headers)
    assert scheduled.status_code == 200, scheduled.text
    assert scheduled.json()["cancel_at_period_end"] is True
    again = await api.delete(SUB, headers=tenant.headers)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "invalid_transition"
    undone = await api.post(f"{SUB}/reactivate", headers=tenant.headers)
    assert undone.status_code == 200, undone.text
    assert undone.json()["cancel_at_period_end"] is False

    paused = await api.post(f"{SUB}/pause", json={}, headers=tenant.headers)
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    assert (await api.post(f"{SUB}/pause", headers=tenant.headers)).status_code == 409
    resumed = await api.post(f"{SUB}/resume", headers=tenant.headers)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "active"

    now = await api.delete(f"{SUB}?at_period_end=false", headers=tenant.headers)
    assert now.status_code == 200, now.text
    assert now.json()["status"] == "canceled"
    old = await _until(api, tenant, lambda b: b["status"] == "canceled")
    assert (await api.post(f"{SUB}/resume", headers=tenant.headers)).status_code == 404

    fresh = await api.post(f"{SUB}/reactivate", headers=tenant.headers)
    assert fresh.status_code == 201, fresh.text
    assert fresh.json()["id"] != old["id"]
    assert fresh.json()["workflow_id"] != old["workflow_id"]
    assert fresh.json()["plan_code"] == "standard"
    await _until(api, tenant, lambda b: b["status"] == "trialing")


@pytest.mark.usefixtures("workers")
async def test_payment_methods(
    api: httpx.AsyncClient, dbs: Databases, workflow_env: WorkflowEnvironment, services: Services
) -> None:
    tenant = await _active_standard(api, dbs, workflow_env, services)
    added = await api.post(
        "/api/billing/payment-methods",
        json={"payment_method_id": "pm_card_mastercard"},
        headers=tenant.headers,
    )
    assert added.status_code == 201, added.text
    listed = (await api.get("/api/billing/payment-methods", headers=tenant.headers)).json()
    assert [(m["brand"], m["is_default"]) for m in listed][0] == (added.json()["brand"], True)
    assert len(listed) == 2
    assert set(listed[0]) == {
        "stripe_payment_method_id", "brand", "last4", "exp_month", "exp_year", "is_default",
        "created_at",
    }  # fmt: skip
    bad = await api.post(
        "/api/billing/payment-methods", json={"payment_method_id": "4242424242424242"},
        headers=tenant.headers,
    )  # fmt: skip
    assert bad.status_code == 422
    assert bad.json()["error"]["fields"][0]["field"] == "payment_method_id"
    refused = await api.post(
        "/api/billing/payment-methods",
        json={"payment_method_id": "pm_card_visa_chargeDeclined"},
        headers=tenant.headers,
    )
    assert refused.status_code == 402, refused.text
    unknown = await api.post(
        "/api/billing/payment-methods",
        json={"payment_method_id": "pm_nope"},
        headers=tenant.headers,
    )
    assert unknown.status_code == 422, unknown.text
    # Neither changed the stored default.
    listed = (await api.get("/api/billing/payment-methods", headers=tenant.headers)).json()
    assert listed[0]["stripe_payment_method_id"] == added.json()["stripe_payment_method_id"]


@pytest.mark.usefixtures("workers")
async def test_unknown_plan_and_bad_input_are_422(
    api: httpx.AsyncClient, dbs: Databases, workflow_env: WorkflowEnvironment, services: Services
) -> None:
    tenant = await _active_standard(api, dbs, workflow_env, services)
    for method, path in (("PUT", SUB), ("POST", f"{SUB}/preview")):
        response = await api.request(
            method, path, json={"plan_code": "platinum"}, headers=tenant.headers
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "unknown_plan"
    bad_timing = await api.put(
        SUB, json={"plan_code": "enterprise", "timing": "someday"}, headers=tenant.headers
    )
    assert bad_timing.status_code == 422
    assert (
        await api.get("/api/billing/invoices?cursor=garbage!", headers=tenant.headers)
    ).status_code == 422
    assert (
        await api.get("/api/billing/invoices/not-a-uuid", headers=tenant.headers)
    ).status_code == 422


async def test_auth_and_missing_subscription(api: httpx.AsyncClient, dbs: Databases) -> None:
    paths = [
        ("GET", "/api/billing/invoices"),
        ("GET", "/api/billing/invoices/upcoming"),
        ("GET", f"{SUB}/history"),
        ("GET", "/api/billing/payment-methods"),
        ("PUT", SUB),
        ("DELETE", SUB),
        ("POST", f"{SUB}/pause"),
        ("POST", f"{SUB}/resume"),
        ("POST", f"{SUB}/reactivate"),
        ("POST", f"{SUB}/preview"),
        ("POST", "/api/billing/payment-methods"),
    ]
    for method, path in paths:
        assert (await api.request(method, path)).status_code == 401, path
    reader = await make_tenant(dbs, scopes=[Scope.READ])
    for method, path in paths:
        if method in ("PUT", "DELETE", "POST") and not path.endswith("/preview"):
            response = await api.request(method, path, headers=reader.headers, json={})
            assert response.status_code == 403, (path, response.text)
    tenant = await make_tenant(dbs)
    for method, path, body in [
        ("GET", f"{SUB}/history", None),
        ("GET", "/api/billing/invoices/upcoming", None),
        ("PUT", SUB, {"plan_code": "standard"}),
        ("DELETE", SUB, None),
        ("POST", f"{SUB}/resume", None),
        ("POST", f"{SUB}/reactivate", None),
        ("GET", "/api/billing/invoices/00000000-0000-0000-0000-000000000000", None),
    ]:
        response = await api.request(method, path, headers=tenant.headers, json=body)
        assert response.status_code == 404, (path, response.text)


async def test_no_worker_is_503_and_nothing_applies_later(
    api: httpx.AsyncClient,
    dbs: Databases,
    services: Services,
    task_queues: tuple[str, str],
    stripe_fake: FakeStripeGateway,
) -> None:
    # A server of its own, not the `workers` fixture's: no worker may poll this workflow's
    # queue until the test says so.
    from tests.factories.tenants import make_api_key
    from tests.harness import start_time_skipping_env
    from worker import build_workers

    env = await start_time_skipping_env()
    services.temporal = env.client
    services.settings = services.settings.model_copy(update={"update_timeout_seconds": 1.0})
    sub = await make_subscription(dbs, task_queues=task_queues)
    key = await make_api_key(dbs, UUID(sub.input.tenant_id), [Scope.MANAGE])
    headers = {"Authorization": f"Bearer {key}"}
    workers: list[Worker] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        # The workflow exists, but no worker polls its queue.
        handle = await env.client.start_workflow(
            SubscriptionWorkflow.run, sub.input, id=sub.workflow_id, task_queue=task_queues[0]
        )
        await align_clock(services, env)
        response = await api.post(f"{SUB}/pause", json={}, headers=headers)
        # The row is still `incomplete` (nothing projected yet): the subscription is live.
        assert response.status_code == 503, response.text
        assert "nothing was changed" in response.json()["error"]["message"]

        # A worker arrives later: the admitted update is refused by its validator (too late).
        await asyncio.sleep(1.5)
        workers = build_workers(
            env.client,
            db=dbs.worker,
            gateway=stripe_fake,
            task_queue=task_queues[0],
            stripe_task_queue=task_queues[1],
            stripe_activities_per_second=100,
        )
        tasks = [asyncio.create_task(w.run()) for w in workers]
        for _ in range(100):
            state = await handle.query(SubscriptionWorkflow.state)
            if state.status == "active" and not state.open_invoices:
                break
            await asyncio.sleep(0.05)
        assert state.status == "active"  # not paused
        kinds = [e.event_type async for e in handle.fetch_history_events()]
        assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED not in kinds
        assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED not in kinds
    finally:
        await asyncio.gather(*(w.shutdown() for w in workers))
        await asyncio.gather(*tasks, return_exceptions=True)
        await env.shutdown()


async def pay_with_new_card(
    api: httpx.AsyncClient,
    services: Services,
    workflow_env: WorkflowEnvironment,
    tenant: TenantWithKey,
    invoice_id: str,
) -> None:
    """The tenant adds a card that works: dunning retries at once and the invoice is paid,
    and the subscription is active again."""
    await align_clock(services, workflow_env)
    card = await api.post(
        "/api/billing/payment-methods", json={"payment_method_id": "pm_card_visa"},
        headers=tenant.headers,
    )  # fmt: skip
    assert card.status_code in (200, 201), card.text
    await _until(
        api, tenant,
        lambda b: any(i["id"] == invoice_id and i["status"] == "paid" for i in b["data"]),
        "/api/billing/invoices",
    )  # fmt: skip
    await _until(api, tenant, lambda b: b["status"] == "active")
