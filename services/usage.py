"""Usage use cases: ingestion (single events and batches) and the quota check.

Usage never flows through workflows (ADR 0003): a batch is one Postgres transaction that
inserts the new events and moves the daily totals and the period counter. The only Temporal call
is opening a soft-cap grace window, made after that transaction committed, with an idempotent
workflow id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NotRequired, TypedDict
from uuid import UUID

from temporalio.service import RPCError

from adapters import metrics
from adapters.db import errors as db_errors
from adapters.db import usage as usage_repo
from adapters.db.notifications import enqueue_notification
from adapters.fastjson import dumps_compact
from adapters.logs import REQUEST_ID
from adapters.temporal import start_grace_window
from billing.catalog import CapKind, Entitlement, Plan
from billing.grace import SOFT_CAP
from billing.lifecycle import Status
from billing.notifications import QUOTA_THRESHOLD
from billing.usage import (
    FUTURE_TOLERANCE,
    EventProblem,
    QuotaDecision,
    check_event,
    crossed_thresholds,
    decide_quota,
    effective_entitlement,
    period_key,
)
from services.context import Services
from services.errors import (
    Conflict,
    FieldInvalid,
    NotFound,
    ServiceUnavailable,
    SubscriptionPaused,
)
from workflows.grace_io import GraceInput

log = logging.getLogger("billing.services.usage")


class UsageEvent(TypedDict):
    """One event as the caller sent it (the API parses the JSON straight into this shape)."""

    metric: str
    quantity: Decimal
    timestamp: NotRequired[datetime | None]
    idempotency_key: str
    metadata: NotRequired[dict[str, Any] | None]


_ACCEPTED, _DUPLICATE, _REJECTED = "accepted", "duplicate", "rejected"


def plan_cache(services: Services) -> usage_repo.PlanCache:
    cache = services.extras.get("plan_cache")
    if not isinstance(cache, usage_repo.PlanCache):
        cache = services.extras["plan_cache"] = usage_repo.PlanCache()
    return cache


def text(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return format(value.normalize(), "f")


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def granted_entitlement(
    plan: Plan, metric: str, overrides: dict[str, tuple[int | None, str | None]]
) -> Entitlement:
    included, cap = overrides.get(metric, (None, None))
    return effective_entitlement(
        plan.entitlement(metric), override_included=included, override_cap=cap
    )


@dataclass(frozen=True, slots=True)
class Crossing:
    metric: str
    period_start: datetime


@dataclass
class IngestOutcome:
    results: list[dict[str, Any]]
    accepted: int
    duplicates: int
    rejected: int
    crossings: list[Crossing]


def _results(
    events: Sequence[UsageEvent], statuses: list[str], problems: dict[int, EventProblem]
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for index, (event, status) in enumerate(zip(events, statuses, strict=True)):
        result = {"index": index, "idempotency_key": event["idempotency_key"], "status": status}
        problem = problems.get(index)
        if problem is not None:
            result["field"] = problem.field
            result["reason"] = problem.message
        results.append(result)
    return results


async def _ingest_batch(
    services: Services,
    tenant_id: UUID,
    events: Sequence[UsageEvent],
    *,
    strict: bool,
    actor: str,
) -> IngestOutcome:
    """Validate, dedupe and record a batch. `strict` (the single-event endpoint) turns the first
    rejected event into a 422 naming its field, with nothing written.

    The hot path of ingestion (1,000 events per call): two single-statement transactions on a
    bare asyncpg connection (read the open period; record the batch with its daily totals and
    period counter), one pass over the events in between, the outcome per event as a list of
    statuses. Notifications and soft-cap stamps follow in their own transaction, only when a
    counter calls for them (ADR 0003, section 1)."""
    catalog_metrics = services.catalog.metrics
    now = services.clock()  # the wall clock (tests align it with the time-skipping server)
    pool = await services.tenant_db.raw_pool()
    for attempt in range(3):
        try:
            async with pool.acquire() as connection:
                period = await usage_repo.open_period_on(connection, tenant_id)
                if period is None:
                    raise NotFound("tenant not found")
                period_start, period_end = period.period_start, period.period_end
                if period_start is None or period_end is None:
                    raise Conflict("this tenant has no subscription with an open billing period")
                if period.subscription_status == Status.PAUSED:
                    raise SubscriptionPaused(
                        "the subscription is paused: usage is neither recorded nor billed until "
                        "it resumes"
                    )
                clock = period.clock
                business_now = clock.business_at(now)
                statuses = [_ACCEPTED] * len(events)
                problems: dict[int, EventProblem] = {}
                first_index: dict[str, int] = {}  # key -> the event that decides its fate
                rows: list[tuple[str, str, Decimal, datetime, bytes | None]] = []
                for index, event in enumerate(events):
                    metadata = event.get("metadata")
                    metadata_json = None if metadata is None else dumps_compact(metadata)
                    occurred_at = event.get("timestamp") or now
                    quantity = event["quantity"]
                    if occurred_at.tzinfo is not None:
                        # pydantic's own tzinfo class answers utcoffset() through a slow path,
                        # and every comparison and the driver's encoding ask it (~1.5 ms per
                        # 1,000 events); the same instant with the standard UTC is cheap.
                        occurred_at = occurred_at.astimezone(UTC)
                        if not clock.is_wall:  # a demo clock: the caller's wall -> business
                            occurred_at = clock.business_at(occurred_at)
                    problem = check_event(
                        metric_known=event["metric"] in catalog_metrics,
                        quantity=quantity,
                        occurred_at=occurred_at,
                        metadata_bytes=0 if metadata_json is None else len(metadata_json),
                        now=business_now,
                        # Five minutes of the caller's clock, however fast business time runs.
                        future_tolerance=FUTURE_TOLERANCE * clock.time_scale,
                        period_start=period_start,
                        period_end=period_end,
                    )
                    if problem is not None:
                        if strict:
                            raise FieldInvalid(problem.field, problem.message)
                        statuses[index] = _REJECTED
                        problems[index] = problem
                        continue
                    key = event["idempotency_key"]
                    if key in first_index:
                        statuses[index] = _DUPLICATE  # the first occurrence in the batch decides
                        continue
                    first_index[key] = index
                    rows.append((key, event["metric"], quantity, occurred_at, metadata_json))
                written = None
                if rows:
                    rows.sort(key=_row_key)
                    written = await usage_repo.ingest_events(
                        connection,
                        tenant_id=tenant_id,
                        events=usage_repo.EventColumns(
                            keys=[r[0] for r in rows],
                            metrics=[r[1] for r in rows],
                            quantities=[str(r[2]) for r in rows],
                            occurred_at=[r[3] for r in rows],
                            metadata_json=[r[4] for r in rows],
                        ),
                        gauge_metrics=services.catalog.gauge_metrics,
                        period_start=period_start,
                        period_end=period_end,
                        actor=actor,
                        request_id=REQUEST_ID.get(),
                    )
            break
        except Exception as error:
            # Concurrent batches can still collide on a unique-index wait; the statement is the
            # whole transaction, so running it again is always safe.
            if db_errors.lost_a_race(error) and attempt < 2:
                continue
            raise
    crossings: list[Crossing] = []
    if written is not None:
        assert period is not None
        # Committed: this process's next check must see it (ADR 0003, "The quota cache").
        services.quota_cache.invalidate(tenant_id)
        for key in written.existing_keys:  # recorded before this batch
            statuses[first_index[key]] = _DUPLICATE
        try:
            crossings = await _after_counters(services, tenant_id, period, written.counters)
        except db_errors.STATEMENT_ERRORS:
            # The events are recorded: the answer must say so. The marks read state, so the next
            # batch for the metric sends what this one could not.
            log.exception("usage ingestion: quota notifications deferred for %s", tenant_id)
    rejected = len(problems)
    duplicates = statuses.count(_DUPLICATE)
    return IngestOutcome(
        _results(events, statuses, problems),
        len(events) - rejected - duplicates,
        duplicates,
        rejected,
        crossings,
    )


async def ingest(
    services: Services,
    tenant_id: UUID,
    events: Sequence[UsageEvent],
    *,
    strict: bool,
    actor: str,
) -> IngestOutcome:
    """Record a batch (the request's audit row with it, ADR 0019), as `actor`."""
    known = services.catalog.metrics.__contains__
    try:
        outcome = await _ingest_batch(services, tenant_id, events, strict=strict, actor=actor)
    except FieldInvalid:
        metrics.count_usage([e["metric"] for e in events], [_REJECTED] * len(events), known)
        raise
    except Exception as error:
        if not db_errors.is_unavailable(error):
            raise
        log.warning("usage ingestion: database unavailable", exc_info=True)
        raise ServiceUnavailable(
            "the usage store is unavailable; retry with the same idempotency keys (events "
            "that were recorded are then reported as duplicates, never counted twice)"
        ) from error
    metrics.count_usage(
        (e["metric"] for e in events), (r["status"] for r in outcome.results), known
    )
    return outcome


def _row_key(row: tuple[str, str, Decimal, datetime, bytes | None]) -> str:
    return row[0]


async def plan_for(services: Services, plan_id: UUID) -> Plan:
    plan = plan_cache(services).cached(plan_id)
    if plan is None:  # first use of this plan version in this process
        async with services.tenant_db.engine.connect() as conn:
            plan = await plan_cache(services).get(conn, plan_id)
    return plan


@dataclass(frozen=True, slots=True)
class _Due:
    counter: usage_repo.CounterAfter
    entitlement: Entitlement
    thresholds: list[int]
    soft_cap_crossed: bool


async def _after_counters(
    services: Services,
    tenant_id: UUID,
    period: usage_repo.OpenPeriod,
    counters: Sequence[usage_repo.CounterAfter],
) -> list[Crossing]:
    """Quota notifications (80 %, 100 %; once per period and metric) and soft-cap crossings,
    decided on the counters as the batch left them, written in one transaction after the
    batch's. The decision reads state, not deltas (a threshold reached and not yet marked, a
    soft cap exceeded and not yet stamped), so if this step is lost (the process dies between
    the two commits) the next batch for the metric does it; the marks are conditional updates,
    so concurrent batches notify once."""
    assert period.plan_id is not None
    assert period.period_start is not None
    plan = await plan_for(services, period.plan_id)
    due: list[_Due] = []
    for counter in counters:
        if counter.metric not in plan.metrics:
            continue
        entitlement = granted_entitlement(plan, counter.metric, period.overrides)
        limit = entitlement.included
        thresholds = crossed_thresholds(limit, counter.quantity, counter.notified_threshold)
        soft_cap_crossed = (
            entitlement.cap is CapKind.SOFT
            and limit is not None
            and counter.quantity > limit
            and not counter.soft_cap_exceeded
        )
        if thresholds or soft_cap_crossed:
            due.append(_Due(counter, entitlement, thresholds, soft_cap_crossed))
    if not due:
        return []
    period_start = period.period_start
    crossings: list[Crossing] = []
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        for item in due:
            metric, limit = item.counter.metric, item.entitlement.included
            for threshold in item.thresholds:
                if await usage_repo.mark_threshold_notified(
                    conn, tenant_id, metric, period_start, threshold
                ):
                    key = period_key(period_start)
                    await enqueue_notification(
                        conn,
                        tenant_id=tenant_id,
                        event_type=QUOTA_THRESHOLD,
                        message_id=f"{QUOTA_THRESHOLD}:{tenant_id}:{metric}:{key}:{threshold}",
                        payload={
                            "metric": metric,
                            "threshold_percent": threshold,
                            "used": text(item.counter.quantity),
                            "limit": limit,
                            "cap": item.entitlement.cap.value,
                            "period_start": period_start.isoformat(),
                        },
                    )
            if item.soft_cap_crossed and await usage_repo.mark_soft_cap_exceeded(
                conn, tenant_id, metric, period_start
            ):
                crossings.append(Crossing(metric, period_start))
    return crossings


async def open_grace_windows(
    services: Services, tenant_id: UUID, crossings: Sequence[Crossing], actor: str
) -> None:
    """After the commit: one grace window per soft cap crossed. A failure here is logged, not
    returned: the events are recorded, and usage stays allowed (soft cap) until a window runs
    out, so a missing window errs towards the customer (the reconciliation job re-opens it)."""
    settings = services.settings
    for crossing in crossings:
        try:
            await start_grace_window(
                services.temporal,
                GraceInput(
                    tenant_id=str(tenant_id),
                    kind=SOFT_CAP,
                    subject=crossing.metric,
                    period_key=period_key(crossing.period_start),
                    period_start=crossing.period_start.isoformat(),
                    duration_seconds=settings.soft_cap_grace_hours * 3600,
                    actor=actor,
                    time_scale=settings.time_scale,
                ),
                task_queue=settings.task_queue,
            )
        except RPCError:
            log.exception("could not open the grace window for %s/%s", tenant_id, crossing.metric)


def last_known(services: Services) -> dict[tuple[UUID, str], bool]:
    """(tenant, metric) -> may be allowed while the database is down: only soft-capped,
    unblocked metrics of active tenants, as seen by the last successful check."""
    cache = services.extras.get("quotalast_known")
    if not isinstance(cache, dict):
        cache = services.extras["quotalast_known"] = {}
    return cache


# --- The quota check ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuotaAnswer:
    """May the tenant use more of a metric now: the body callers read, and how it was decided.
    `degraded`: the database did not answer, so the last successful check decided (a soft cap
    promises continued service; anything else fails closed)."""

    allowed: bool
    body: dict[str, Any]
    decision: QuotaDecision | None = None
    reset: datetime | None = None
    degraded: bool = False
    extra: dict[str, str] = field(default_factory=dict)


async def check_quota(
    services: Services, tenant_id: UUID, metric: str, quantity: Decimal
) -> QuotaAnswer:
    """Read-only: it reserves nothing. Fails closed when the database does not answer within
    `quota_check_timeout_seconds`, except for a metric the last successful check saw
    soft-capped and unblocked (ADR 0003)."""
    if metric not in services.catalog.metrics:
        raise FieldInvalid("metric", "unknown metric", "query")
    cache = services.quota_cache
    row = cache.get(tenant_id, metric, datetime.now(UTC))
    metrics.child(metrics.QUOTA_CACHE, "hit" if row is not None else "miss").inc()
    plan = None
    try:
        async with asyncio.timeout(services.settings.quota_check_timeout_seconds):
            if row is None:
                # One statement as the app role; see usage_quota_row (migrations 0004, 0005).
                token = cache.token(tenant_id)
                pool = await services.tenant_db.raw_pool()
                async with pool.acquire() as connection:
                    row = await usage_repo.quota_row(connection, tenant_id, metric)
                if row is not None:
                    cache.put(tenant_id, metric, row, token)
            if row is not None and row.plan_id is not None:
                plan = await plan_for(services, row.plan_id)
    except Exception as error:
        if not db_errors.is_unavailable(error):
            raise
        log.warning("quota check: database unavailable", exc_info=True)
        soft_ok = last_known(services).get((tenant_id, metric), False)
        body = {
            "allowed": soft_ok,
            "metric": metric,
            "reason": None if soft_ok else "quota_unavailable",
            "degraded": True,
        }
        metrics.QUOTA_CHECKS.labels(metric, "allowed" if soft_ok else "quota_unavailable").inc()
        return QuotaAnswer(soft_ok, body, degraded=True)
    if row is None:
        raise NotFound("tenant not found")
    if plan is None or row.period_end is None:
        metrics.QUOTA_CHECKS.labels(metric, "no_active_subscription").inc()
        return QuotaAnswer(
            False, {"allowed": False, "metric": metric, "reason": "no_active_subscription"}
        )
    granted = effective_entitlement(
        plan.entitlement(metric),
        override_included=row.override_included,
        override_cap=row.override_cap,
    )
    decision = decide_quota(
        granted,
        used=row.used,
        requested=quantity,
        access_status=row.access_status,
        blocked=row.blocked,
        paused=row.subscription_status == Status.PAUSED,
    )
    last_known(services)[(tenant_id, metric)] = (
        granted.cap is CapKind.SOFT and not row.blocked and row.access_status == "active"
    )
    body = {
        "allowed": decision.allowed,
        "metric": metric,
        "reason": decision.reason.value if decision.reason else None,
        "limit": decision.limit,
        "used": text(decision.used),
        "remaining": text(decision.remaining),
        "reset": utc(row.period_end).isoformat(),
        "in_grace": decision.in_grace,
    }
    outcome = "allowed" if decision.allowed else body["reason"] or "blocked"
    metrics.child(metrics.QUOTA_CHECKS, metric, str(outcome)).inc()
    return QuotaAnswer(decision.allowed, body, decision, row.period_end)
