"""The Stripe webhook endpoint and the `stripe_event` workflow, against the time-skipping server,
the Stripe fake and the stand-in subscription workflow."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.db import webhook_inbox as inbox
from adapters.db.tables import audit_log, payment_methods, tenants, webhook_events
from adapters.stripe_fake import FakeStripeGateway
from api.app import create_app
from billing.payments import InvoiceLine
from config import Settings
from services.context import Services
from tests.factories.stripe_events import (
    OLD_WEBHOOK_SECRET,
    TEST_WEBHOOK_SECRET,
    invoice_object,
    signed_request,
    stripe_event,
)
from tests.factories.tenants import operator_headers
from tests.harness import Databases
from tests.webhooks.conftest import Subscriber, make_subscriber, settle_api
from workflows.stripe_event_io import StripeEventResult

URL = "/api/billing/webhooks/stripe"


async def post_event(
    api: httpx.AsyncClient, event: dict[str, Any], secret: str = TEST_WEBHOOK_SECRET
) -> httpx.Response:
    """POST a signed event, then wait until the API has tried to start its workflow."""
    body, headers = signed_request(event, secret)
    response = await api.post(URL, content=body, headers=headers)
    await settle_api(api)
    return response


async def inbox_count(dbs: Databases) -> int:
    async with dbs.worker.transaction() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(webhook_events))).scalar_one()
        )


async def inbox_row(dbs: Databases, event_id: str) -> inbox.InboxEvent:
    async with dbs.worker.transaction() as conn:
        row = await inbox.get_event(conn, event_id)
    assert row is not None
    return row


async def processed(client: Client, event_id: str, replay: int = 0) -> StripeEventResult:
    suffix = f":replay:{replay}" if replay else ""
    return await client.get_workflow_handle(
        f"stripe-event:{event_id}{suffix}", result_type=StripeEventResult
    ).result()


async def open_invoice(gateway: FakeStripeGateway, sub: Subscriber) -> tuple[str, str]:
    invoice_id = str(uuid.uuid4())
    inv = await gateway.create_invoice(
        sub.customer_id,
        [InvoiceLine("Standard plan", 2000, "usd")],
        {
            "invoice_id": invoice_id,
            "tenant_id": sub.tenant_id,
            "subscription_id": sub.subscription_id,
        },
        f"invoice:{invoice_id}",
    )
    return inv.id, invoice_id


def invoice_event(
    event_type: str, sub: Subscriber, stripe_invoice_id: str, invoice_id: str, status: str
) -> dict[str, Any]:
    return stripe_event(
        event_type,
        invoice_object(
            stripe_invoice_id,
            customer=sub.customer_id,
            status=status,
            tenant_id=sub.tenant_id,
            subscription_id=sub.subscription_id,
            invoice_id=invoice_id,
        ),
    )


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "case",
    ["forged", "stale", "future", "missing", "malformed_json", "not_an_event", "wrong_secret"],
)
async def test_unverified_requests_are_refused_and_store_nothing(
    api: httpx.AsyncClient, dbs: Databases, case: str
) -> None:
    event = stripe_event("invoice.paid", {"id": "in_1", "object": "invoice"})
    body, headers = signed_request(event)
    if case == "forged":
        headers["Stripe-Signature"] = headers["Stripe-Signature"][:-4] + "0000"
    elif case == "stale":
        body, headers = signed_request(event, timestamp=int(time.time()) - 3600)
    elif case == "future":
        body, headers = signed_request(event, timestamp=int(time.time()) + 3600)
    elif case == "missing":
        del headers["Stripe-Signature"]
    elif case == "malformed_json":
        body = b'{"id": "evt_1", "type": '
        from tests.factories.stripe_events import stripe_signature

        headers["Stripe-Signature"] = stripe_signature(body, TEST_WEBHOOK_SECRET)
    elif case == "not_an_event":
        body = json.dumps({"hello": "world"}).encode()
        from tests.factories.stripe_events import stripe_signature

        headers["Stripe-Signature"] = stripe_signature(body, TEST_WEBHOOK_SECRET)
    elif case == "wrong_secret":
        body, headers = signed_request(event, OLD_WEBHOOK_SECRET)
    response = await api.post(URL, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_webhook"
    assert await inbox_count(dbs) == 0


async def test_oversized_body_is_refused_with_413(api: httpx.AsyncClient, dbs: Databases) -> None:
    event = stripe_event("invoice.paid", {"id": "in_1", "padding": "x" * (2 * 1024 * 1024)})
    body, headers = signed_request(event)
    response = await api.post(URL, content=body, headers=headers)
    assert response.status_code == 413
    assert await inbox_count(dbs) == 0


async def test_oversized_chunked_body_without_length_is_refused(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    event = stripe_event("invoice.paid", {"id": "in_1", "padding": "x" * (2 * 1024 * 1024)})
    body, headers = signed_request(event)

    async def chunks() -> Any:
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    response = await api.post(URL, content=chunks(), headers=headers)
    assert response.status_code == 413
    assert await inbox_count(dbs) == 0


async def test_rotation_accepts_old_and_new_secret_during_overlap(
    rotated_settings: Settings, services: Services, dbs: Databases
) -> None:
    services.settings = rotated_settings
    app = create_app(rotated_settings, services=services)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as api:
        for secret in (TEST_WEBHOOK_SECRET, OLD_WEBHOOK_SECRET):
            response = await post_event(api, stripe_event("some.unknown_type", {"id": "x"}), secret)
            assert response.status_code == 200, response.text
        response = await post_event(
            api, stripe_event("some.unknown_type", {"id": "x"}), "whsec_other"
        )
        assert response.status_code == 400
    assert await inbox_count(dbs) == 2


# ------------------------------------------------------------------------------ routing


async def test_unknown_and_subscription_events_are_stored_and_acknowledged(
    api: httpx.AsyncClient, dbs: Databases, workflow_env: WorkflowEnvironment
) -> None:
    unknown = stripe_event("radar.early_fraud_warning.created", {"id": "issfr_1"})
    sub_event = stripe_event(
        "customer.subscription.updated", {"id": "sub_1", "object": "subscription"}
    )
    for event in (unknown, sub_event):
        response = await post_event(api, event)
        assert response.status_code == 200
    assert (await inbox_row(dbs, unknown["id"])).status == "ignored"
    assert (await inbox_row(dbs, sub_event["id"])).status == "processed"
    # Neither drives state: no processing workflow was started for them.
    for event in (unknown, sub_event):
        with pytest.raises(RPCError) as raised:
            await workflow_env.client.get_workflow_handle(f"stripe-event:{event['id']}").describe()
        assert raised.value.status == RPCStatusCode.NOT_FOUND


async def test_invoice_event_signals_the_subscription_with_the_reread_invoice(
    api: httpx.AsyncClient,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    subscriber: Subscriber,
    workflow_env: WorkflowEnvironment,
) -> None:
    stripe_invoice_id, invoice_id = await open_invoice(stripe_fake, subscriber)
    stripe_fake.mark_paid_out_of_band(stripe_invoice_id)
    # The event's own snapshot is stale ("open"); the signal must carry Stripe's current state.
    event = invoice_event("invoice.finalized", subscriber, stripe_invoice_id, invoice_id, "open")
    response = await post_event(api, event)
    assert response.status_code == 200
    result = await processed(workflow_env.client, event["id"])
    assert result.status == "processed"
    state = await subscriber.state()
    assert [(s.event_id, s.invoice_id, s.invoice_status) for s in state.applied] == [
        (event["id"], invoice_id, "paid")
    ]
    row = await inbox_row(dbs, event["id"])
    assert (row.status, str(row.tenant_id), row.attempts) == ("processed", subscriber.tenant_id, 1)


async def test_same_event_delivered_ten_times_concurrently_has_one_effect(
    api: httpx.AsyncClient,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    subscriber: Subscriber,
    workflow_env: WorkflowEnvironment,
) -> None:
    stripe_invoice_id, invoice_id = await open_invoice(stripe_fake, subscriber)
    event = invoice_event(
        "invoice.payment_failed", subscriber, stripe_invoice_id, invoice_id, "open"
    )
    concurrent = await asyncio.gather(*(post_event(api, event) for _ in range(10)))
    sequential = [await post_event(api, event) for _ in range(10)]
    assert {r.status_code for r in [*concurrent, *sequential]} == {200}
    assert sum(1 for r in concurrent if not r.json()["duplicate"]) == 1
    await processed(workflow_env.client, event["id"])
    assert await inbox_count(dbs) == 1
    state = await subscriber.state()
    assert [s.event_id for s in state.applied] == [event["id"]]
    assert len(stripe_fake.keys_for("retrieve_invoice")) == 0  # reads carry no key
    assert sum(1 for c in stripe_fake.calls if c.method == "retrieve_invoice") == 1


async def test_events_for_one_invoice_in_every_order_end_in_the_same_state(
    api: httpx.AsyncClient,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
    event_workers: list[Worker],
    workflow_env: WorkflowEnvironment,
) -> None:
    client = workflow_env.client
    finals = []
    for order in itertools.permutations(
        [
            ("invoice.finalized", "open"),
            ("invoice.payment_failed", "open"),
            ("invoice.paid", "paid"),
        ]
    ):
        sub = await make_subscriber(client, dbs, stripe_fake, settings)
        stripe_invoice_id, invoice_id = await open_invoice(stripe_fake, sub)
        stripe_fake.mark_paid_out_of_band(stripe_invoice_id)  # what happened, in the end
        for event_type, snapshot in order:
            event = invoice_event(event_type, sub, stripe_invoice_id, invoice_id, snapshot)
            assert (await post_event(api, event)).status_code == 200
            await processed(client, event["id"])
        state = await sub.state()
        finals.append((len(state.applied), state.invoice_status[stripe_invoice_id]))
        await sub.handle.terminate("test over")
    assert finals == [(3, "paid")] * 6


async def test_payment_method_event_updates_the_projection(
    api: httpx.AsyncClient,
    dbs: Databases,
    subscriber: Subscriber,
    workflow_env: WorkflowEnvironment,
) -> None:
    async with dbs.admin.transaction() as conn:
        await conn.execute(
            tenants.update()
            .where(tenants.c.id == uuid.UUID(subscriber.tenant_id))
            .values(stripe_customer_id=subscriber.customer_id)
        )
    pm = {
        "id": "pm_123",
        "object": "payment_method",
        "customer": subscriber.customer_id,
        "type": "card",
        "card": {
            "brand": "visa",
            "last4": "4242",
            "exp_month": 4,
            "exp_year": 2031,
            "fingerprint": "f",
        },
    }
    for event_type, exp_year in (
        ("payment_method.attached", 2031),
        ("payment_method.automatically_updated", 2033),
    ):
        event = stripe_event(event_type, {**pm, "card": {**pm["card"], "exp_year": exp_year}})
        assert (await post_event(api, event)).status_code == 200
        assert (await processed(workflow_env.client, event["id"])).status == "processed"
    async with dbs.worker.transaction() as conn:
        rows = (await conn.execute(select(payment_methods))).mappings().all()
    assert [
        (r["stripe_payment_method_id"], r["brand"], r["last4"], r["exp_month"], r["exp_year"])
        for r in rows
    ] == [("pm_123", "visa", "4242", 4, 2033)]
    state = await subscriber.state()
    assert [s.stripe_payment_method_id for s in state.applied] == ["pm_123", "pm_123"]

    deleted = stripe_event(
        "customer.deleted", {"id": subscriber.customer_id, "object": "customer", "metadata": {}}
    )
    assert (await post_event(api, deleted)).status_code == 200
    await processed(workflow_env.client, deleted["id"])
    async with dbs.worker.transaction() as conn:
        customer = (
            await conn.execute(
                select(tenants.c.stripe_customer_id).where(
                    tenants.c.id == uuid.UUID(subscriber.tenant_id)
                )
            )
        ).scalar_one()
        actions = (await conn.execute(select(audit_log.c.action, audit_log.c.actor))).all()
    assert customer is None
    assert ("tenant.stripe_customer_deleted", f"stripe:{deleted['id']}") in actions


async def test_dead_lettered_event_replayed_by_the_operator_is_processed(
    api: httpx.AsyncClient,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    subscriber: Subscriber,
    workflow_env: WorkflowEnvironment,
) -> None:
    stripe_invoice_id, invoice_id = await open_invoice(stripe_fake, subscriber)
    stripe_fake.fail_next("retrieve_invoice", times=3)  # every attempt of the schedule
    event = invoice_event("invoice.paid", subscriber, stripe_invoice_id, invoice_id, "paid")
    assert (await post_event(api, event)).status_code == 200
    result = await processed(workflow_env.client, event["id"])
    assert (result.status, result.attempts) == ("dead_lettered", 3)
    row = await inbox_row(dbs, event["id"])
    assert row.status == "dead_lettered"
    assert "stripe_transient" in (row.last_error or "")
    assert (await subscriber.state()).applied == []

    headers = await operator_headers(dbs)
    listed = await api.get("/api/billing/operator/webhooks/dead-letters", headers=headers)
    assert [e["stripe_event_id"] for e in listed.json()] == [event["id"]]

    replayed = await api.post(
        "/api/billing/operator/webhooks/replay", json={"event_ids": [event["id"]]}, headers=headers
    )
    assert replayed.status_code == 200, replayed.text
    assert replayed.json() == [
        {
            "event_id": event["id"],
            "replay": 1,
            "workflow_id": f"stripe-event:{event['id']}:replay:1",
            "started": True,
        }
    ]
    assert (await processed(workflow_env.client, event["id"], replay=1)).status == "processed"
    assert [s.event_id for s in (await subscriber.state()).applied] == [event["id"]]
    assert (await inbox_row(dbs, event["id"])).status == "processed"

    # Replaying an applied event again starts a new run and changes nothing downstream.
    again = await api.post(
        "/api/billing/operator/webhooks/replay", json={"event_ids": [event["id"]]}, headers=headers
    )
    assert again.json()[0]["replay"] == 2
    await processed(workflow_env.client, event["id"], replay=2)
    assert len((await subscriber.state()).applied) == 1
    async with dbs.worker.transaction() as conn:
        audited = (
            (
                await conn.execute(
                    select(audit_log.c.action).where(audit_log.c.subject_id == event["id"])
                )
            )
            .scalars()
            .all()
        )
    assert audited == ["webhook_event.replayed", "webhook_event.replayed"]


async def test_replay_requires_the_operator_scope(api: httpx.AsyncClient, dbs: Databases) -> None:
    from tests.factories.tenants import make_tenant

    tenant = await make_tenant(dbs)
    response = await api.post(
        "/api/billing/operator/webhooks/replay",
        json={"all_dead_lettered": True},
        headers=tenant.headers,
    )
    assert response.status_code == 403
    missing = await api.post(
        "/api/billing/operator/webhooks/replay",
        json={"event_ids": ["evt_nope"]},
        headers=await operator_headers(dbs),
    )
    assert missing.status_code == 404


async def test_event_for_no_known_subscription_is_ignored(
    api: httpx.AsyncClient,
    dbs: Databases,
    event_workers: list[Worker],
    workflow_env: WorkflowEnvironment,
) -> None:
    event = stripe_event(
        "charge.failed", {"id": "ch_1", "object": "charge", "customer": "cus_unknown"}
    )
    assert (await post_event(api, event)).status_code == 200
    result = await processed(workflow_env.client, event["id"])
    assert result.status == "ignored"
    assert (await inbox_row(dbs, event["id"])).status == "ignored"


async def test_cli_lists_dead_letters_and_replays_them_all(
    api: httpx.AsyncClient,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    subscriber: Subscriber,
    workflow_env: WorkflowEnvironment,
    settings: Settings,
) -> None:
    from cli.webhooks import print_dead_letters, replay

    stripe_invoice_id, invoice_id = await open_invoice(stripe_fake, subscriber)
    stripe_fake.fail_next("retrieve_invoice", times=6)
    events = [
        invoice_event(t, subscriber, stripe_invoice_id, invoice_id, "open")
        for t in ("invoice.finalized", "invoice.payment_failed")
    ]
    for event in events:
        assert (await post_event(api, event)).status_code == 200
        assert (await processed(workflow_env.client, event["id"])).status == "dead_lettered"

    out = io.StringIO()
    assert await print_dead_letters(settings, out) == 0
    assert {line.split("\t")[0] for line in out.getvalue().splitlines()[:-1]} == {
        e["id"] for e in events
    }

    host = workflow_env.client.service_client.config.target_host
    cli_settings = settings.model_copy(update={"temporal_address": host})
    out = io.StringIO()
    assert await replay(cli_settings, out, None, actor="cli:test") == 0
    assert out.getvalue().endswith("2 event(s) replayed\n")
    for event in events:
        assert (await processed(workflow_env.client, event["id"], replay=1)).status == "processed"
    assert sorted(s.event_id for s in (await subscriber.state()).applied) == sorted(
        e["id"] for e in events
    )
    async with dbs.worker.transaction() as conn:
        actors = (
            (
                await conn.execute(
                    select(audit_log.c.actor).where(audit_log.c.action == "webhook_event.replayed")
                )
            )
            .scalars()
            .all()
        )
    assert actors == ["cli:test", "cli:test"]


async def test_no_configured_secret_is_a_503_so_stripe_keeps_retrying(
    services: Services, dbs: Databases
) -> None:
    settings = services.settings.model_copy(update={"stripe_webhook_secrets": []})
    app = create_app(settings, services=services)
    services.settings = settings
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as api:
        response = await post_event(api, stripe_event("invoice.paid", {"id": "in_1"}))
    assert response.status_code == 503
    assert await inbox_count(dbs) == 0


async def test_replaying_a_recorded_only_event_signals_nothing(
    api: httpx.AsyncClient,
    dbs: Databases,
    subscriber: Subscriber,
    workflow_env: WorkflowEnvironment,
) -> None:
    event = stripe_event(
        "customer.subscription.updated",
        {"id": "sub_1", "customer": "cus_x", "metadata": {"tenant_id": subscriber.tenant_id}},
    )
    assert (await post_event(api, event)).status_code == 200
    replayed = await api.post(
        "/api/billing/operator/webhooks/replay",
        json={"event_ids": [event["id"]]},
        headers=await operator_headers(dbs),
    )
    assert replayed.status_code == 200
    assert (await processed(workflow_env.client, event["id"], replay=1)).status == "processed"
    assert (await subscriber.state()).applied == []
