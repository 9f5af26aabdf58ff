"""POST /api/billing/webhooks/stripe: public, authenticated by Stripe's signature.

The answer is 2xx only once the event is committed to the inbox; Postgres trouble -> 503 so
Stripe retries; Temporal trouble -> still 2xx (the re-dispatcher starts the workflow later).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from adapters import metrics
from adapters.db import errors as db_errors
from adapters.db import webhook_inbox as inbox
from adapters.dispatch import Accepted, DispatchConfig, Dispatcher, DispatchQueue
from adapters.stripe_webhooks import WebhookRejected, verify_stripe_event
from api.auth import AuthFirstRoute, ServicesDep
from api.errors import error_body, error_responses
from billing.stripe_events import EventHandling, handling_for
from services import rate_limits
from services.context import Services

log = logging.getLogger("billing.webhooks")
router = APIRouter(route_class=AuthFirstRoute, prefix="/api/billing/webhooks", tags=["webhooks"])

# What the inbox row starts as, per handling: only handled types get a workflow.
_INITIAL_STATUS = {
    EventHandling.SIGNAL: inbox.RECEIVED,
    EventHandling.PROJECT: inbox.RECEIVED,
    EventHandling.DISPUTE: inbox.RECEIVED,
    EventHandling.RECORD: inbox.PROCESSED,
    EventHandling.IGNORE: inbox.IGNORED,
}


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (before reading it all) anything over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


@router.post(
    "/stripe",
    responses=error_responses(400, 413, 429, 503),
    summary="Stripe webhook endpoint (signature-verified, deduplicated by event id)",
)
async def receive_stripe_event(request: Request, services: ServicesDep) -> JSONResponse:
    settings = services.settings
    await rate_limits.limit_webhook_source(
        services, request.client.host if request.client else "unknown"
    )
    try:
        body = await _read_body(request, settings.stripe_webhook_max_body_bytes)
    except _TooLarge:
        return JSONResponse(
            error_body("payload_too_large", "webhook body exceeds the configured limit"),
            status_code=413,
        )
    secrets = [s.get_secret_value() for s in settings.stripe_webhook_secrets]
    if not secrets:
        # Our misconfiguration, not a bad request: a 5xx keeps Stripe retrying until it is fixed.
        return JSONResponse(
            error_body("service_unavailable", "no webhook signing secret is configured"),
            status_code=503,
            headers={"Retry-After": str(db_errors.RETRY_AFTER_SECONDS)},
        )
    try:
        event = verify_stripe_event(
            body,
            request.headers.get("stripe-signature"),
            secrets,
            tolerance_seconds=settings.stripe_webhook_tolerance_seconds,
        )
    except WebhookRejected as exc:
        metrics.WEBHOOKS_RECEIVED.labels("unverified", "rejected").inc()
        return JSONResponse(error_body(exc.code, str(exc)), status_code=400)

    event_id: str = event["id"]
    event_type: str = event["type"]
    handling = handling_for(event_type)
    api_version: Any = event.get("api_version")
    refs = Accepted.refs_of(event)
    try:
        pool = await services.system_db.raw_pool()
        async with pool.acquire() as connection:
            stored = await inbox.store_event(
                connection,
                event_id=event_id,
                event_type=event_type,
                api_version=api_version if isinstance(api_version, str) else None,
                livemode=event.get("livemode") is True,
                body=body,
                status=_INITIAL_STATUS[handling],
                invoice_id=refs.invoice_id if refs else None,
                stripe_invoice_id=refs.stripe_invoice_id if refs else None,
            )
    except db_errors.DataError as exc:
        # Valid, signed JSON that jsonb still refuses (e.g. a number past numeric's range):
        # refused for good, never a 500 that Stripe would retry for days.
        log.warning("webhook %s refused, not storable: %r", event_id, exc)
        return JSONResponse(
            error_body("unstorable_payload", f"the event cannot be stored: {exc}"),
            status_code=400,
        )
    except Exception as exc:
        if not db_errors.is_unavailable(exc):
            raise
        log.warning("webhook %s not stored, database unavailable: %r", event_id, exc)
        return JSONResponse(
            error_body("service_unavailable", "the event could not be stored; retry later"),
            status_code=503,
            headers={"Retry-After": str(db_errors.RETRY_AFTER_SECONDS)},
        )

    metrics.WEBHOOKS_RECEIVED.labels(event_type, "stored" if stored.inserted else "duplicate").inc()
    if stored.inserted and stored.status != inbox.RECEIVED:
        # Settled at acceptance (needs no action): it never reaches a workflow to count it.
        metrics.WEBHOOKS_PROCESSED.labels(event_type, stored.status).inc()
    if stored.status == inbox.RECEIVED:
        # Committed: from here on the event cannot be lost. The process's bounded dispatch
        # queue routes it (settled if it needs no action, one signal if it does, else the
        # workflow; ADR 0024), so Stripe's request never waits on Temporal (or on its timeout
        # when Temporal is down); if this process dies first, or the queue is full, the
        # re-dispatcher starts its workflow.
        accepted = Accepted(event_type, refs, stored.known)
        dispatch_queue(services).submit(event_id, stored.replay_count, accepted)
    return JSONResponse(
        {"received": True, "duplicate": not stored.inserted, "status": stored.status},
        status_code=200,
    )


def dispatch_queue(services: Services) -> DispatchQueue:
    """The API process's queue of workflow starts, created on first use."""
    found = services.extras.get("webhook_dispatch")
    if not isinstance(found, DispatchQueue):
        dispatcher = Dispatcher(
            services.system_db, services.temporal, DispatchConfig.from_settings(services.settings)
        )
        found = services.extras["webhook_dispatch"] = DispatchQueue(dispatcher)
    return found
