"""Prometheus metrics of the engine (ADR 0010): one registry per process, served on its own port
by the API and by the worker (`serve`), never on the public API port.

Labels stay bounded: routes by their template, metrics by catalog code, event types by Stripe's
names, currencies, reasons and outcomes. No tenant, subscription or invoice id is a label: a
per-tenant view comes from the Temporal UI's search attributes (`TenantId`) and the logs.

Counters moved by activities count at least once: an activity retried after its effect
committed counts again, so they are rates to watch, not a ledger (the ledger is Postgres).
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

__all__ = [
    "HTTP_REQUESTS",
    "HTTP_SECONDS",
    "INVOICES_ISSUED",
    "INVOICE_AMOUNT",
    "NOTIFICATION_DELIVERIES",
    "PAYMENT_ATTEMPTS",
    "QUOTA_CACHE",
    "QUOTA_CHECKS",
    "USAGE_EVENTS",
    "WEBHOOKS_PROCESSED",
    "WEBHOOKS_RECEIVED",
    "HttpMetrics",
    "count_usage",
    "serve",
]

HTTP_REQUESTS = Counter(
    "billing_http_requests", "HTTP requests answered", ["route", "method", "status"]
)
HTTP_SECONDS = Histogram(
    "billing_http_request_duration_seconds",
    "Time to answer an HTTP request",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
USAGE_EVENTS = Counter(
    "billing_usage_events", "Usage events ingested, by outcome", ["metric", "outcome"]
)
QUOTA_CHECKS = Counter(
    "billing_quota_checks",
    "Quota checks: allowed, or blocked with the reason",
    ["metric", "outcome"],
)
QUOTA_CACHE = Counter("billing_quota_cache", "Quota-check rows from the cache or not", ["result"])
WEBHOOKS_RECEIVED = Counter(
    "billing_webhooks_received",
    "Stripe webhooks at the endpoint: stored, duplicate or rejected",
    ["type", "result"],
)
WEBHOOKS_PROCESSED = Counter(
    "billing_webhooks_processed",
    "Stripe events settled by their workflow: processed, ignored, dead_lettered, or a failed"
    " attempt that will be retried",
    ["status"],
)
INVOICES_ISSUED = Counter("billing_invoices_issued", "Invoices issued", ["currency", "reason"])
INVOICE_AMOUNT = Counter(
    "billing_invoice_amount_minor",
    "Amount invoiced, in minor units of the currency",
    ["currency", "reason"],
)
PAYMENT_ATTEMPTS = Counter(
    "billing_payment_attempts",
    "Payment attempts by outcome (paid, declined, requires_action, no_payment_method, ...)",
    ["source", "outcome"],
)
NOTIFICATION_DELIVERIES = Counter(
    "billing_notification_deliveries", "Notification delivery attempts by outcome", ["outcome"]
)


def count_usage(
    metrics: Iterable[str], outcomes: Iterable[str], known: Callable[[str], bool]
) -> None:
    """One increment per (metric, outcome) of a batch; an unknown metric is labelled
    `unknown`, so a caller cannot grow the label set."""
    tally = Tally(
        (metric if known(metric) else "unknown", outcome)
        for metric, outcome in zip(metrics, outcomes, strict=True)
    )
    for (metric, outcome), n in tally.items():
        USAGE_EVENTS.labels(metric, outcome).inc(n)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HttpMetrics:
    """Pure ASGI middleware: requests and latency by route template (the matched route's path,
    `unmatched` for a path no route has), method and status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The labelled children by (route, method, status): resolving labels takes a lock and a
        # lookup per request, so each combination is resolved once (a bounded set).
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            key = (getattr(route, "path", None) or "unmatched", scope.get("method", ""), status)
            children = self._children.get(key)
            if children is None:
                template, method, code = key
                children = self._children[key] = (
                    HTTP_REQUESTS.labels(template, method, str(code)),
                    HTTP_SECONDS.labels(template, method),
                )
            children[0].inc()
            children[1].observe(time.perf_counter() - started)


def serve(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> Callable[[], None]:
    """Serve `/metrics` on `host:port` in a thread; returns the function that stops it."""
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
