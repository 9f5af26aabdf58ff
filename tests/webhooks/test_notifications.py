"""Outbound notifications: Standard Webhooks signing (spec vector), endpoint registration, and
durable delivery to a receiver on 127.0.0.1 (retry until it answers 2xx, dead-letter if never)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.db.tables import notification_deliveries
from billing.standard_webhooks import (
    SignatureError,
    SignedHeaders,
    new_secret,
    sign,
    signed_headers,
    verify,
)
from config import Settings
from tests.factories.tenants import make_tenant
from tests.harness import Databases, free_port
from tests.loopback import serve_on_loopback
from tests.webhooks.conftest import SendFn
from workflows.notification_io import NotificationDeliveryResult

# The Standard Webhooks reference vector (standard-webhooks/standard-webhooks test suites).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 - published test vector
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_signature_matches_the_standard_webhooks_vector() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    headers = SignedHeaders(SPEC_ID, str(SPEC_TIMESTAMP), f"v1,bogus {SPEC_SIGNATURE}")
    verify(SPEC_SECRET, headers, SPEC_BODY, now=SPEC_TIMESTAMP + 10)


@pytest.mark.parametrize(
    ("body", "now", "msg_id"),
    [
        (SPEC_BODY + b" ", SPEC_TIMESTAMP, SPEC_ID),  # tampered body
        (SPEC_BODY, SPEC_TIMESTAMP + 301, SPEC_ID),  # too old
        (SPEC_BODY, SPEC_TIMESTAMP - 301, SPEC_ID),  # too far ahead
        (SPEC_BODY, SPEC_TIMESTAMP, "msg_other"),  # another message's signature
    ],
)
def test_verification_refuses_tampering_and_stale_timestamps(
    body: bytes, now: int, msg_id: str
) -> None:
    headers = SignedHeaders(msg_id, str(SPEC_TIMESTAMP), SPEC_SIGNATURE)
    with pytest.raises(SignatureError):
        verify(SPEC_SECRET, headers, body, now=now)


def test_new_secrets_are_distinct_and_sign() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    assert first.startswith("whsec_")
    headers = signed_headers(first, "msg_1", 100, b"{}")
    verify(first, headers, b"{}", now=100)
    with pytest.raises(SignatureError):
        verify(second, headers, b"{}", now=100)


@dataclass
class Receiver:
    """A tenant's endpoint: fails the first `failures` requests with 500, then answers 204."""

    failures: int = 0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: Request) -> Response:
        self.requests.append((dict(request.headers), await request.body()))
        if len(self.requests) <= self.failures:
            return Response(status_code=500)
        return Response(status_code=204)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hooks", self.handle, methods=["POST"])])


async def register(api: httpx.AsyncClient, headers: dict[str, str], url: str) -> dict[str, Any]:
    response = await api.post(
        "/api/billing/notification-endpoints", json={"url": url}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def delivery_row(dbs: Databases, delivery_id: str) -> dict[str, Any]:
    async with dbs.worker.transaction() as conn:
        row = (
            (
                await conn.execute(
                    select(notification_deliveries).where(
                        notification_deliveries.c.id == uuid.UUID(delivery_id)
                    )
                )
            )
            .mappings()
            .one()
        )
    return dict(row)


async def test_receiver_failing_three_times_gets_the_event_once_more_signed(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    event_workers: list[Worker],
    send: SendFn,
) -> None:
    tenant = await make_tenant(dbs)
    receiver = Receiver(failures=3)
    async with serve_on_loopback(receiver.app()) as base:
        endpoint = await register(api, tenant.headers, f"{base}/hooks")
        listed = await api.get("/api/billing/notification-endpoints", headers=tenant.headers)
        assert "secret" not in listed.json()[0]  # shown once, at registration
        [delivery_id] = await send(str(tenant.id), "invoice.paid:inv_1")
        assert await send(str(tenant.id), "invoice.paid:inv_1") == [delivery_id]  # retried call
        result = await workflow_env.client.get_workflow_handle(
            f"notification:{delivery_id}", result_type=NotificationDeliveryResult
        ).result()
    assert (result.status, result.attempts) == ("delivered", 4)
    assert len(receiver.requests) == 4
    ids = {headers["webhook-id"] for headers, _ in receiver.requests}
    assert ids == {"invoice.paid:inv_1"}  # stable across retries
    for headers, body in receiver.requests:
        verify(
            endpoint["secret"],
            SignedHeaders(
                headers["webhook-id"], headers["webhook-timestamp"], headers["webhook-signature"]
            ),
            body,
            now=int(headers["webhook-timestamp"]),
        )
    row = await delivery_row(dbs, delivery_id)
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 4, None)
    assert row["delivered_at"] is not None


async def test_dead_receiver_ends_dead_lettered(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    event_workers: list[Worker],
    send: SendFn,
) -> None:
    tenant = await make_tenant(dbs)
    await register(api, tenant.headers, f"http://127.0.0.1:{free_port()}/nobody-listens")
    [delivery_id] = await send(str(tenant.id), f"invoice.paid:{time.monotonic_ns()}")
    result = await workflow_env.client.get_workflow_handle(
        f"notification:{delivery_id}", result_type=NotificationDeliveryResult
    ).result()
    assert (result.status, result.attempts) == ("dead_lettered", 5)
    row = await delivery_row(dbs, delivery_id)
    assert row["status"] == "dead_lettered"
    assert "Connect" in row["last_error"]


async def test_endpoint_registration_needs_the_manage_scope(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    tenant = await make_tenant(dbs, scopes=["billing.read"])
    response = await api.post(
        "/api/billing/notification-endpoints",
        json={"url": "http://127.0.0.1:9/x"},
        headers=tenant.headers,
    )
    assert response.status_code == 403


async def test_a_workflow_notifies_with_one_call(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    event_workers: list[Worker],
    settings: Settings,
) -> None:
    from tests.webhooks.standin import NotifyingWorkflow, NotifyInput

    tenant = await make_tenant(dbs)
    receiver = Receiver()
    async with serve_on_loopback(receiver.app()) as base:
        await register(api, tenant.headers, f"{base}/hooks")
        await register(api, tenant.headers, f"{base}/hooks")  # two endpoints: two deliveries
        delivery_ids = await workflow_env.client.execute_workflow(
            NotifyingWorkflow.run,
            NotifyInput(str(tenant.id), "inv_42"),
            id=f"notify-test-{uuid.uuid4()}",
            task_queue=settings.task_queue,
        )
        assert len(delivery_ids) == 2
        for delivery_id in delivery_ids:
            result = await workflow_env.client.get_workflow_handle(
                f"notification:{delivery_id}", result_type=NotificationDeliveryResult
            ).result()
            assert result.status == "delivered"
    assert [h["webhook-id"] for h, _ in receiver.requests] == ["invoice.paid:inv_42"] * 2
    body = receiver.requests[0][1]
    assert b'"type":"invoice.paid"' in body
