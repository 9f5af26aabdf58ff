"""Stripe events for tests: event envelopes and `Stripe-Signature` headers signed like Stripe."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Mapping
from typing import Any

TEST_WEBHOOK_SECRET = "whsec_test_current"  # noqa: S105 - test-only secret


def accept_test_webhooks(services: Any) -> None:
    """Let the API behind `services` verify events signed with `TEST_WEBHOOK_SECRET`."""
    from pydantic import SecretStr

    services.settings = services.settings.model_copy(
        update={"stripe_webhook_secrets": [SecretStr(TEST_WEBHOOK_SECRET)]}
    )


OLD_WEBHOOK_SECRET = "whsec_test_previous"  # noqa: S105 - test-only secret

_ids = itertools.count(1)


def new_event_id() -> str:
    return f"evt_test_{time.monotonic_ns()}_{next(_ids)}"


def stripe_event(
    event_type: str, obj: Mapping[str, Any], *, event_id: str | None = None
) -> dict[str, Any]:
    return {
        "id": event_id or new_event_id(),
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
        "data": {"object": dict(obj)},
    }


def stripe_signature(body: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """What Stripe sends: `t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def signed_request(
    event: Mapping[str, Any], secret: str = TEST_WEBHOOK_SECRET, *, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(event).encode()
    return body, {
        "Stripe-Signature": stripe_signature(body, secret, timestamp=timestamp),
        "Content-Type": "application/json",
    }


def invoice_object(
    stripe_invoice_id: str,
    *,
    customer: str,
    status: str,
    tenant_id: str,
    subscription_id: str,
    invoice_id: str,
    amount_paid: int = 0,
) -> dict[str, Any]:
    return {
        "id": stripe_invoice_id,
        "object": "invoice",
        "customer": customer,
        "status": status,
        "amount_paid": amount_paid,
        "amount_due": 2000,
        "currency": "usd",
        "hosted_invoice_url": f"https://invoice.stripe.test/{stripe_invoice_id}",
        "metadata": {
            "invoice_id": invoice_id,
            "tenant_id": tenant_id,
            "subscription_id": subscription_id,
        },
    }
