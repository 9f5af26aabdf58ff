"""Prometheus metrics of the engine (ADR 0010): one registry per process, served on its own port
by the API and by the worker (`serve`), never on the public API port.

Labels stay bounded: routes by their template, metrics by catalog code, event types by Stripe's
names, currencies, reasons and outcomes. No tenant, subscription or invoice id is a label: a
per-tenant view comes from the Temporal UI's search attributes (`TenantId`) and the logs.

Counters moved by activities count at least once: an activity retried after its effect
committed counts again, so they are rates to watch, not a ledger (the ledger is Postgres).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from adapters.db import operations
from adapters.db.operations import Snapshot
from adapters.db.session import Database

__all__ = [
    "HTTP_REQUESTS",
    "HTTP_SECONDS",
    "DUNNING_ATTEMPTS",
    "DUNNING_RECOVERIES",
    "INVOICES_ISSUED",
    "INVOICE_OUTCOMES",
    "SUBSCRIPTION_CHANGES",
    "USAGE_DRIFT",
    "INVOICE_AMOUNT",
    "NOTIFICATION_DELIVERIES",
    "PAYMENT_ATTEMPTS",
    "QUOTA_CACHE",
    "QUOTA_CHECKS",
    "USAGE_EVENTS",
    "WEBHOOKS_PROCESSED",
    "WEBHOOKS_RECEIVED",
    "OPEN_GRACE_WINDOWS",
    "STRIPE_CALLS",
    "STRIPE_DRIFT",
    "STRIPE_SECONDS",
    "SUBSCRIPTIONS",
    "SUSPENDED_TENANTS",
    "WEBHOOK_INBOX_LAG",
    "HttpMetrics",
    "MeteredGateway",
    "attempt_label",
    "child",
    "count_invoice_outcome",
    "count_usage",
    "refresh_gauges",
    "refresh_once",
    "serve",
    "set_gauges",
]

log = logging.getLogger("billing.metrics")

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
DISPUTES = Counter(
    "billing_disputes",
    "Invoice disputes applied from Stripe events, by the status they moved to: open, won, lost",
    ["status"],
)
WEBHOOKS_PROCESSED = Counter(
    "billing_webhooks_processed",
    "Stripe events settled by their workflow, by type and status: processed, ignored,"
    " dead_lettered, or attempt_failed (a failed attempt that will be retried)",
    ["type", "status"],
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
INVOICE_OUTCOMES = Counter(
    "billing_invoice_outcomes",
    "Invoices settled or failed, by who wrote it (subscription: the first collection; dunning)"
    " and outcome (paid, payment_failed, uncollectible, void)",
    ["source", "outcome"],
)
DUNNING_ATTEMPTS = Counter(
    "billing_dunning_attempts",
    "Dunning payment attempts by what started them (retry: the schedule; new_card) and outcome",
    ["trigger", "outcome"],
)
DUNNING_RECOVERIES = Counter(
    "billing_dunning_recoveries",
    "Invoices recovered by dunning, by the attempt that recovered them and the cause (retry,"
    " new_card, paid_out_of_band)",
    ["attempt", "cause"],
)
SUBSCRIPTION_CHANGES = Counter(
    "billing_subscription_changes",
    "Subscription lifecycle changes recorded, by kind (trial_started, renewed, plan_changed,"
    " canceled, dunning_exhausted, payment_recovered, ...)",
    ["kind"],
)
USAGE_DRIFT = Counter(
    "billing_usage_drift",
    "Usage aggregates the reconciliation found different from the raw events",
)
STRIPE_DRIFT = Counter(
    "billing_stripe_drift",
    "Differences the lost-webhook sweeper found between the engine's invoices and Stripe's",
    ["field"],
)
NOTIFICATION_DELIVERIES = Counter(
    "billing_notification_deliveries", "Notification delivery attempts by outcome", ["outcome"]
)
STRIPE_CALLS = Counter(
    "billing_stripe_calls",
    "Calls to Stripe by operation and result (ok, or the error's code)",
    ["operation", "result"],
)
STRIPE_SECONDS = Histogram(
    "billing_stripe_call_duration_seconds",
    "Time a Stripe call took",
    ["operation"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# Refreshed by the worker from Postgres every `metrics_refresh_seconds` (`refresh_gauges`).
WEBHOOK_INBOX_LAG = Gauge(
    "billing_webhook_inbox_lag_seconds",
    "Age of the oldest stored webhook not yet processed, ignored or dead-lettered (0: none)",
)
OPEN_GRACE_WINDOWS = Gauge("billing_open_grace_windows", "Grace windows not resolved", ["kind"])
SUSPENDED_TENANTS = Gauge("billing_suspended_tenants", "Tenants whose access is suspended")
SUBSCRIPTIONS = Gauge(
    "billing_subscriptions", "Subscriptions by plan and status", ["plan", "status"]
)


def attempt_label(attempt: int) -> str:
    """An attempt number as a label: the policies' schedules are short, and anything past ten
    is one bucket, so the label set stays bounded whatever a policy says."""
    return str(attempt) if attempt <= 10 else "11+"


def child(counter: Counter, *labels: str) -> Any:
    """`counter.labels(*labels)`, resolved once per label set: `labels()` takes a lock and
    builds a key on every call, which the quota check's hot path need not pay (the label sets
    are bounded: catalog metrics, outcomes)."""
    key = (id(counter), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = counter.labels(*labels)
    return found


_children: dict[tuple[int, tuple[str, ...]], Any] = {}


# Invoice statuses that end an invoice's collection, as `INVOICE_OUTCOMES` names them.
_SETTLED = frozenset({"paid", "uncollectible", "void"})


def count_invoice_outcome(source: str, status: str) -> None:
    """Count a projected status that settles the invoice (paid, uncollectible, void)."""
    if status in _SETTLED:
        INVOICE_OUTCOMES.labels(source, status).inc()


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


def set_gauges(snapshot: Snapshot, now: datetime) -> None:
    """The operators' gauges from a Postgres snapshot (`adapters/db/operations.py`); a label
    value that disappeared is set to 0, not left at its last count."""
    oldest = snapshot.oldest_unprocessed_webhook
    WEBHOOK_INBOX_LAG.set(max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
    _set_all(OPEN_GRACE_WINDOWS, {(k,): n for k, n in snapshot.open_grace_windows.items()})
    SUSPENDED_TENANTS.set(snapshot.suspended_tenants)
    subscriptions: dict[tuple[str, ...], int] = dict(snapshot.subscriptions.items())
    _set_all(SUBSCRIPTIONS, subscriptions)


def _set_all(gauge: Gauge, values: dict[tuple[str, ...], int]) -> None:
    known = _seen.setdefault(id(gauge), set())
    for labels in known - set(values):
        gauge.labels(*labels).set(0)
    for labels, n in values.items():
        gauge.labels(*labels).set(n)
    known |= set(values)


# Label values each gauge has been set for (so a vanished one is reset to 0).
_seen: dict[int, set[tuple[str, ...]]] = {}


class MeteredGateway:
    """A Stripe gateway whose calls are counted and timed by operation (the method's name) and
    result: `ok`, or the `code` of the error raised."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = "ok"
            try:
                return await attr(*args, **kwargs)
            except Exception as error:
                result = getattr(error, "code", None) or "error"
                raise
            finally:
                STRIPE_CALLS.labels(name, result).inc()
                STRIPE_SECONDS.labels(name).observe(time.perf_counter() - started)

        return call


async def refresh_gauges(db: Database, stop: asyncio.Event, interval_seconds: float) -> None:
    """The worker's loop: `set_gauges` from Postgres every `interval_seconds` until `stop`; a
    failed read (Postgres down) leaves the last values and is tried again."""
    while not stop.is_set():
        await refresh_once(db)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_seconds)


async def refresh_once(db: Database) -> None:
    try:
        async with db.transaction() as conn:  # cross-tenant counts, as the worker role
            snap = await operations.snapshot(conn)
    except Exception:
        log.warning("metrics: gauges not refreshed", exc_info=True)
        return
    set_gauges(snap, datetime.now(UTC))


def serve(host: str, port: int, registry: CollectorRegistry = REGISTRY) -> Callable[[], None]:
    """Serve `/metrics` on `host:port` in a thread; returns the function that stops it."""
    server, thread = start_http_server(port, addr=host, registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
