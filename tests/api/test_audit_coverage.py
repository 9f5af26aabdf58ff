"""Every state-changing path writes an audit row with an actor and before/after (ADR 0019).

The first test walks every state-changing route of the OpenAPI spec (POST, PUT, PATCH, DELETE;
a route added later fails it until the walk covers it) and finds, for each call, the audit row
it wrote: the action, the caller as actor, `before` and `after`, and the request's id when the
API wrote the row itself. The second drives a subscription through its workflow decisions
(trial conversion, renewal, a declined collection, dunning recovered by a new card, a payment
grace window ended by an operator and waived) and finds a row for each decision type with the
deciding workflow as actor. Then the audit export returns those rows for the time range."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from adapters.db.tables import audit_log, subscription_changes
from adapters.stripe_fake import FakeStripeGateway
from adapters.temporal import start_payment_grace
from config import Settings
from services.context import Services
from tests.api.test_billing_api import SUB, _until, align_clock
from tests.factories.stripe_events import (
    accept_test_webhooks,
    signed_request,
    stripe_event,
)
from tests.factories.tenants import TenantWithKey, make_tenant, operator_headers
from tests.harness import Databases
from tests.webhooks.conftest import settle_api
from workflows.grace import GraceWindowWorkflow
from workflows.grace_io import GraceResult

STATE_CHANGING = {"post", "put", "patch", "delete"}
# POST routes that change nothing, and why.
READS = {("POST", "/api/billing/subscription/preview"): "computes a bill, writes nothing"}


def state_changing_routes(api: httpx.AsyncClient) -> set[tuple[str, str]]:
    app = api._transport.app  # type: ignore[attr-defined]
    spec = app.openapi()
    return {
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in STATE_CHANGING
    }


async def _last_id(dbs: Databases) -> int:
    async with dbs.admin.transaction() as conn:
        return int(await conn.scalar(select(func.coalesce(func.max(audit_log.c.id), 0))) or 0)


async def _rows_after(dbs: Databases, mark: int) -> list[dict[str, Any]]:
    async with dbs.admin.transaction() as conn:
        rows = await conn.execute(
            select(audit_log).where(audit_log.c.id > mark).order_by(audit_log.c.id)
        )
        return [dict(r._mapping) for r in rows]


def assert_before_after(row: dict[str, Any]) -> None:
    details = row["details"]
    assert "before" in details, row
    assert "after" in details, row
    assert details["before"] is not None or details["after"] is not None, row
    assert row["actor"], row


class Walk:
    """Calls routes and finds the audit row each call wrote."""

    def __init__(self, api: httpx.AsyncClient, dbs: Databases) -> None:
        self.api, self.dbs = api, dbs
        self.covered: dict[tuple[str, str], dict[str, Any]] = {}

    async def call(
        self,
        method: str,
        template: str,
        *,
        headers: dict[str, str],
        action: str,
        actor: str,
        in_request: bool = True,
        path: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """`in_request`: the API writes the row while answering (so it carries the request
        id); otherwise a workflow writes it, and the walk waits for it."""
        mark = await _last_id(self.dbs)
        response = await self.api.request(
            method, template.format(**(path or {})), headers=headers, **kwargs
        )
        assert response.status_code < 300, (method, template, response.text)
        row = await self.row(mark, action, actor)
        if in_request:
            assert row["request_id"] == response.headers["X-Request-Id"], row
        self.covered[(method, template)] = row
        return response

    async def row(self, mark: int, action: str, actor: str) -> dict[str, Any]:
        seen: list[dict[str, Any]] = []
        for _ in range(200):
            seen = await _rows_after(self.dbs, mark)
            found = [r for r in seen if r["action"] == action and r["actor"] == actor]
            if found:
                assert_before_after(found[0])
                return found[0]
            await asyncio.sleep(0.05)
        raise AssertionError(
            f"no audit row {action} by {actor}: {[(r['action'], r['actor']) for r in seen]}"
        )


@pytest.fixture
async def grace_windows() -> AsyncIterator[list[WorkflowHandle[Any, Any]]]:
    """Windows a test opened; one still running at the end is terminated (a timer nobody polls
    would hold the time-skipping server back)."""
    handles: list[WorkflowHandle[Any, Any]] = []
    yield handles
    for handle in handles:
        if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test over")


@pytest.mark.usefixtures("workers")
async def test_every_state_changing_route_writes_an_audit_row_with_before_and_after(
    api: httpx.AsyncClient,
    dbs: Databases,
    services: Services,
    workflow_env: WorkflowEnvironment,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
    grace_windows: list[WorkflowHandle[Any, Any]],
) -> None:
    walk = Walk(api, dbs)
    op = await operator_headers(dbs)
    operator = await _actor_of(api, op)
    ops = "/api/billing/operator"

    made = await walk.call(
        "POST", f"{ops}/tenants", headers=op, action="tenant.created", actor=operator,
        json={"name": "Audited Co", "email": "billing@audited.example.com", "reason": "onboarding"},
    )  # fmt: skip
    tenant_id = UUID(made.json()["id"])
    t = {"tenant_id": tenant_id}
    key = await walk.call(
        "POST", f"{ops}/tenants/{{tenant_id}}/api-keys", path=t, headers=op,
        action="api_key.created", actor=operator,
        json={"name": "backend", "scopes": ["billing.read", "billing.manage"]},
    )  # fmt: skip
    tenant = TenantWithKey(tenant_id, "Audited Co", key.json()["key"])
    me = f"api_key:{key.json()['id']}"
    spare = await api.post(
        f"{ops}/tenants/{tenant_id}/api-keys",
        json={"name": "spare", "scopes": ["billing.read"]},
        headers=op,
    )
    await walk.call(
        "DELETE", f"{ops}/api-keys/{{key_id}}", path={"key_id": spare.json()["id"]}, headers=op,
        action="api_key.revoked", actor=operator, params={"reason": "unused"},
    )  # fmt: skip

    await walk.call(
        "PUT", "/api/billing/account/billing-details", headers=tenant.headers,
        action="tenant.billing_details_set", actor=me,
        json={"name": "Audited Co", "address": ["1 Main St"], "email": "ap@audited.example.com"},
    )  # fmt: skip
    await walk.call(
        "POST", "/api/billing/payment-methods", headers=tenant.headers,
        action="payment_method.added", actor=me, json={"payment_method_id": "pm_card_visa"},
    )  # fmt: skip
    await walk.call(
        "POST", SUB, headers=tenant.headers, action="subscription.created", actor=me,
        json={"plan_code": "standard"},
    )  # fmt: skip
    await _until(api, tenant, lambda b: b["status"] == "trialing")
    await workflow_env.sleep(timedelta(days=14, hours=1))
    await _until(api, tenant, lambda b: b["status"] == "active")
    await align_clock(services, workflow_env)

    # Commands a workflow applies: the row is the workflow's, the actor the caller.
    await walk.call(
        "PUT", SUB, headers=tenant.headers, action="subscription.plan_changed", actor=me,
        in_request=False, json={"plan_code": "enterprise"},
    )  # fmt: skip
    await walk.call(
        "DELETE", SUB, headers=tenant.headers, action="subscription.cancel_scheduled", actor=me,
        in_request=False,
    )  # fmt: skip
    await walk.call(
        "POST", f"{SUB}/reactivate", headers=tenant.headers,
        action="subscription.cancel_undone", actor=me, in_request=False,
    )  # fmt: skip
    await walk.call(
        "POST", f"{SUB}/pause", headers=tenant.headers, action="subscription.paused", actor=me,
        in_request=False, json={},
    )  # fmt: skip
    await walk.call(
        "POST", f"{SUB}/resume", headers=tenant.headers, action="subscription.resumed",
        actor=me, in_request=False,
    )  # fmt: skip

    now = services.clock().isoformat()
    await walk.call(
        "POST", "/api/billing/usage", headers=tenant.headers, action="usage.recorded", actor=me,
        json={"metric": "api_calls", "quantity": 3, "idempotency_key": "a-1", "timestamp": now},
    )  # fmt: skip
    batch = [
        {"metric": "api_calls", "quantity": 2, "idempotency_key": "a-2", "timestamp": now},
        {"metric": "llm_tokens", "quantity": 7, "idempotency_key": "a-3", "timestamp": now},
    ]
    recorded = await walk.call(
        "POST", "/api/billing/usage/batch", headers=tenant.headers, action="usage.recorded",
        actor=me, json={"events": batch},
    )  # fmt: skip
    assert recorded.json()["accepted"] == 2
    usage_row = walk.covered[("POST", "/api/billing/usage/batch")]
    assert usage_row["details"]["after"] == {
        "events": 2,
        "period_totals": {"api_calls": "5", "llm_tokens": "7"},
    }

    metric = {"tenant_id": tenant_id, "metric": "api_calls"}
    override = f"{ops}/tenants/{{tenant_id}}/quota-overrides/{{metric}}"
    await walk.call(
        "PUT", override, path=metric, headers=op, action="quota_override.set", actor=operator,
        json={"included": 500_000, "cap": "soft", "reason": "deal"},
    )  # fmt: skip
    await walk.call(
        "DELETE", override, path=metric, headers=op, action="quota_override.removed",
        actor=operator, params={"reason": "deal over"},
    )  # fmt: skip
    today = services.clock().date().isoformat()
    await walk.call(
        "POST", f"{ops}/usage/reconcile", headers=op, action="usage.reconciled", actor=operator,
        json={"first": today, "last": today, "reason": "check"},
    )  # fmt: skip
    await walk.call(
        "PUT", f"{ops}/tenants/{{tenant_id}}/rate-limits", path=t, headers=op,
        action="tenant.rate_limit_set", actor=operator,
        json={"route_class": "read", "per_window": 10_000, "reason": "load"},
    )  # fmt: skip

    endpoint = await walk.call(
        "POST", "/api/billing/notification-endpoints", headers=tenant.headers,
        action="notification_endpoint.created", actor=me,
        json={"url": "https://hooks.audited.test/billing"},
    )  # fmt: skip
    invoices = (await api.get("/api/billing/invoices", headers=tenant.headers)).json()["data"]
    await walk.call(
        "POST", "/api/billing/invoices/{invoice_id}/resend",
        path={"invoice_id": invoices[-1]["id"]}, headers=tenant.headers,
        action="invoice.resent", actor=me,
    )  # fmt: skip
    await walk.call(
        "POST", f"{ops}/tenants/{{tenant_id}}/charges", path=t, headers=op,
        action="subscription.charge_added", actor=operator, in_request=False,
        json={"amount": 100, "description": "Correction", "invoice": "next",
              "idempotency_key": "audit-charge-1", "reason": "audit"},
    )  # fmt: skip
    services.catalog = dataclasses.replace(services.catalog, tenant_charges=True)
    await walk.call(
        "POST", f"{SUB}/charges", headers=tenant.headers, action="subscription.charge_added",
        actor=me, in_request=False,
        json={"amount": 100, "description": "Add-on", "invoice": "next",
              "idempotency_key": "audit-charge-2"},
    )  # fmt: skip
    await walk.call(
        "POST", f"{ops}/coupons", headers=op, action="coupon.created", actor=operator,
        json={"code": "AUDIT10", "name": "10%", "percent_off": 10, "reason": "audit"},
    )  # fmt: skip
    await walk.call(
        "POST", f"{ops}/coupons/{{coupon_code}}/promotion-codes", path={"coupon_code": "AUDIT10"},
        headers=op, action="promotion_code.created", actor=operator,
        json={"code": "AUDITA", "reason": "audit"},
    )  # fmt: skip
    await api.post(f"{ops}/coupons/AUDIT10/promotion-codes", json={"code": "AUDITB"}, headers=op)
    await walk.call(
        "POST", f"{SUB}/discount", headers=tenant.headers, action="subscription.discount_applied",
        actor=me, in_request=False, json={"promotion_code": "AUDITA"},
    )  # fmt: skip
    other = await make_tenant(dbs)
    subscribed = await api.post(SUB, json={"plan_code": "standard"}, headers=other.headers)
    assert subscribed.status_code == 201, subscribed.text
    await _until(api, other, lambda b: b["status"] == "trialing")
    await walk.call(
        "POST", f"{ops}/tenants/{{tenant_id}}/discount", path={"tenant_id": other.id},
        headers=op, action="subscription.discount_applied", actor=operator, in_request=False,
        json={"promotion_code": "AUDITB", "reason": "goodwill"},
    )  # fmt: skip
    paid = next(i for i in invoices if i["status"] == "paid")
    await walk.call(
        "POST", f"{ops}/tenants/{{tenant_id}}/invoices/{{invoice_id}}/credit-notes",
        path={"tenant_id": tenant_id, "invoice_id": paid["id"]}, headers=op,
        action="credit_note.issued", actor=operator,
        json={"amount": 50, "reason": "goodwill", "idempotency_key": "audit-1"},
    )  # fmt: skip
    await walk.call(
        "DELETE", "/api/billing/notification-endpoints/{endpoint_id}",
        path={"endpoint_id": endpoint.json()["id"]}, headers=tenant.headers,
        action="notification_endpoint.disabled", actor=me,
    )  # fmt: skip

    # A Stripe event that changes the card: the row is the event's.
    accept_test_webhooks(services)
    account = (await api.get("/api/billing/account", headers=tenant.headers)).json()
    card = account["default_payment_method"]
    event = stripe_event(
        "payment_method.updated",
        {
            "id": card["stripe_payment_method_id"], "object": "payment_method",
            "customer": account["stripe_customer_id"], "type": "card",
            "card": {"brand": card["brand"], "last4": card["last4"], "exp_month": 12,
                     "exp_year": 2039, "fingerprint": "f"},
        },
    )  # fmt: skip
    body, signed = signed_request(event)
    await walk.call(
        "POST", "/api/billing/webhooks/stripe", headers=signed, content=body,
        action="payment_method.updated", actor=f"stripe:{event['id']}", in_request=False,
    )  # fmt: skip
    await settle_api(api)
    await walk.call(
        "POST", f"{ops}/webhooks/replay", headers=op, action="webhook_event.replayed",
        actor=operator, json={"event_ids": [event["id"]], "reason": "check"},
    )  # fmt: skip

    # A payment grace window, as a failed collection opens it; the operator's three actions.
    window = await start_payment_grace(
        workflow_env.client, str(tenant_id), str(uuid4()), grace_seconds=7 * 86400.0,
        actor="system:test", task_queue=settings.task_queue,
    )  # fmt: skip
    grace_windows.append(window)
    grace_id = await _grace_id(api, op, tenant_id)
    g = {"tenant_id": tenant_id, "grace_id": grace_id}
    windows = f"{ops}/tenants/{{tenant_id}}/grace-periods/{{grace_id}}"
    await walk.call(
        "POST", f"{windows}/extend", path=g, headers=op, action="grace.extended", actor=operator,
        json={"hours": 1, "reason": "asked"},
    )  # fmt: skip
    await walk.call(
        "POST", f"{windows}/end", path=g, headers=op, action="grace.ended", actor=operator,
        json={},
    )  # fmt: skip
    await walk.row(0, "tenant.suspended", operator)
    await walk.call(
        "POST", f"{windows}/resolve", path=g, headers=op, action="grace.waived", actor=operator,
        json={},
    )  # fmt: skip
    await walk.row(0, "tenant.reactivated", operator)
    await _closed(window)

    await walk.call(
        "POST", "/api/billing/exports", headers=tenant.headers,
        action="tenant.export_requested", actor=me,
    )  # fmt: skip
    await walk.call(
        "POST", f"{ops}/tenants/{{tenant_id}}/exports", path=t, headers=op,
        action="tenant.export_requested", actor=operator, json={"reason": "audit"},
    )  # fmt: skip
    # A cancellation now, then a new subscription on the old one's terms.
    canceled = await api.delete(f"{SUB}?at_period_end=false", headers=tenant.headers)
    assert canceled.status_code == 200, canceled.text
    await _until(api, tenant, lambda b: b["status"] == "canceled")
    mark = await _last_id(dbs)
    fresh = await api.post(f"{SUB}/reactivate", headers=tenant.headers)
    assert fresh.status_code == 201, fresh.text
    await walk.row(mark, "subscription.created", me)
    await walk.call(
        "POST", f"{ops}/tenants/{{tenant_id}}/erase", path=t, headers=op,
        action="tenant.erasure_requested", actor=operator, json={"reason": "request"},
    )  # fmt: skip

    missing = state_changing_routes(api) - set(walk.covered) - set(READS)
    assert missing == set(), f"state-changing routes the walk does not cover: {sorted(missing)}"
    assert set(READS) <= state_changing_routes(api)


async def _actor_of(api: httpx.AsyncClient, headers: dict[str, str]) -> str:
    """The operator key's actor, from the row its own first command writes."""
    made = await api.post(
        "/api/billing/operator/tenants", json={"name": "probe", "reason": "probe"}, headers=headers
    )
    assert made.status_code == 201, made.text
    rows = await api.get(
        "/api/billing/operator/audit",
        params={"tenant_id": made.json()["id"], "action": "tenant.created"},
        headers=headers,
    )
    return str(rows.json()["data"][0]["actor"])


async def _grace_id(api: httpx.AsyncClient, headers: dict[str, str], tenant_id: UUID) -> str:
    for _ in range(200):
        listed = await api.get(
            f"/api/billing/operator/tenants/{tenant_id}/grace-periods", headers=headers
        )
        if listed.status_code == 200 and listed.json()["items"]:
            return str(listed.json()["items"][0]["id"])
        await asyncio.sleep(0.05)
    raise AssertionError("the grace window never showed up")


async def _closed(handle: WorkflowHandle[Any, Any]) -> GraceResult:
    plain = handle._client.get_workflow_handle_for(GraceWindowWorkflow.run, handle.id)
    for _ in range(200):
        if (await plain.describe()).status != WorkflowExecutionStatus.RUNNING:
            return await plain.result()
        await asyncio.sleep(0.05)
    raise AssertionError(f"{handle.id} did not close")


# Workflow decision types and the workflow that decides them (`system:{workflow id}`).
DECISIONS = {
    "invoice.issued": "subscription",
    "invoice.open": "subscription",
    "invoice.paid": "subscription",
    "invoice.updated": "subscription",  # a declined collection: one more attempt, still open
    "subscription.trial_converted": "subscription",
    "subscription.renewed": "subscription",
    "subscription.payment_failed": "subscription",
    "subscription.payment_recovered": "subscription",
    "dunning.attempted": "dunning",
}


@pytest.mark.usefixtures("workers")
async def test_every_workflow_decision_type_writes_an_audit_row_the_export_returns(
    api: httpx.AsyncClient,
    dbs: Databases,
    services: Services,
    workflow_env: WorkflowEnvironment,
    stripe_fake: FakeStripeGateway,
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=1)
    from tests.api.test_billing_api import _active_standard

    tenant = await _active_standard(api, dbs, workflow_env, services)
    account = (await api.get("/api/billing/account", headers=tenant.headers)).json()
    stripe_fake.decline_next(account["stripe_customer_id"])
    await workflow_env.sleep(timedelta(days=31))
    await _until(api, tenant, lambda b: b["status"] == "past_due")
    await align_clock(services, workflow_env)
    card = await api.post(
        "/api/billing/payment-methods", json={"payment_method_id": "pm_card_visa"},
        headers=tenant.headers,
    )  # fmt: skip
    assert card.status_code in (200, 201), card.text
    await _until(
        api, tenant, lambda b: [i["status"] for i in b["data"]] == ["paid", "paid"],
        "/api/billing/invoices",
    )  # fmt: skip
    await _until(api, tenant, lambda b: b["status"] == "active")

    decided: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for _ in range(100):
        async with dbs.admin.transaction() as conn:
            rows = [
                dict(r._mapping)
                for r in await conn.execute(
                    select(audit_log)
                    .where(audit_log.c.tenant_id == tenant.id)
                    .order_by(audit_log.c.id)
                )
            ]
        # The first row of each decision type made by the workflow expected to make it.
        decided = {}
        for r in rows:
            workflow = DECISIONS.get(r["action"])
            if workflow and r["actor"].startswith(f"system:{workflow}:"):
                decided.setdefault(r["action"], r)
        if set(DECISIONS) <= set(decided):
            break
        await asyncio.sleep(0.05)
    assert set(DECISIONS) - set(decided) == set(), [(r["action"], r["actor"]) for r in rows]
    for row in decided.values():
        assert_before_after(row)
    assert decided["subscription.payment_failed"]["details"]["before"]["status"] == "active"
    assert decided["subscription.payment_failed"]["details"]["after"]["status"] == "past_due"
    assert decided["invoice.open"]["details"]["after"]["number"].startswith("INV-")
    # Dunning recovered the renewal: its own decision, by its own workflow.
    assert any(
        r["action"] == "invoice.paid" and r["actor"].startswith("system:dunning:") for r in rows
    )

    # Every history row the workflow recorded has its audit row: the two are one write.
    async with dbs.admin.transaction() as conn:
        history = (
            await conn.execute(
                select(subscription_changes.c.kind).where(
                    subscription_changes.c.tenant_id == tenant.id
                )
            )
        ).all()
    assert {f"subscription.{h.kind}" for h in history} <= {r["action"] for r in rows}

    # The audit export returns them for the time range.
    op = await operator_headers(dbs)
    exported = await api.get(
        "/api/billing/operator/audit/export",
        params={
            "format": "jsonl",
            "tenant_id": str(tenant.id),
            "since": started.isoformat(),
            "until": (datetime.now(UTC) + timedelta(minutes=1)).isoformat(),
        },
        headers=op,
    )
    assert exported.status_code == 200, exported.text
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert {line["id"] for line in lines} == {r["id"] for r in rows}
    assert set(DECISIONS) <= {line["action"] for line in lines}
    assert all("before" in line["details"] and "after" in line["details"] for line in lines)
