"""`/api/billing/usage`: ingestion (single and batch), the quota check, and usage reads.

Usage never flows through workflows (ADR 0003): a batch is one Postgres transaction that
inserts the new events and moves the daily totals and the period counter. The only Temporal call
is opening a soft-cap grace window, made after that transaction committed, with an idempotent
workflow id.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from temporalio.service import RPCError

from adapters.api_keys import Scope
from adapters.db import errors as db_errors
from adapters.db import usage as usage_repo
from adapters.db.notifications import enqueue_notification
from adapters.db.session import Connection
from adapters.temporal import start_grace_window
from api.auth import AuthFirstRoute, ManagePrincipal, ReadPrincipal, ServicesDep, authorize_request
from api.errors import (
    Conflict,
    FieldInvalid,
    NotFound,
    ServiceUnavailable,
    SubscriptionPaused,
    error_responses,
)
from api.fastjson import FastJSONResponse, dumps_compact
from api.services import Services
from api.usage_schemas import (
    DailyUsage,
    MetricSeriesOut,
    MetricUsage,
    QuotaCheckOut,
    QuotaOut,
    UsageBatchIn,
    UsageBatchOut,
    UsageEventFields,
    UsageEventIn,
    UsageEventOut,
    UsageSummaryOut,
    parse_usage_batch,
)
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
from workflows.grace_io import GraceInput

router = APIRouter(route_class=AuthFirstRoute, prefix="/api/billing/usage", tags=["usage"])
log = logging.getLogger("billing.api.usage")


# --- Shared helpers ----------------------------------------------------------------------------


def plan_cache(services: Services) -> usage_repo.PlanCache:
    cache = services.extras.get("plan_cache")
    if not isinstance(cache, usage_repo.PlanCache):
        cache = services.extras["plan_cache"] = usage_repo.PlanCache()
    return cache


def _text(value: Decimal | None) -> str | None:
    if value is None:
        return None
    return format(value.normalize(), "f")


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _entitlement(
    plan: Plan, metric: str, overrides: dict[str, tuple[int | None, str | None]]
) -> Entitlement:
    included, cap = overrides.get(metric, (None, None))
    return effective_entitlement(
        plan.entitlement(metric), override_included=included, override_cap=cap
    )


@dataclass(frozen=True, slots=True)
class _Crossing:
    metric: str
    period_start: datetime


# --- Ingestion -------------------------------------------------------------------------------


_ACCEPTED, _DUPLICATE, _REJECTED = "accepted", "duplicate", "rejected"


@dataclass
class _Outcome:
    results: list[dict[str, Any]]
    accepted: int
    duplicates: int
    rejected: int
    crossings: list[_Crossing]


def _results(
    events: Sequence[UsageEventFields], statuses: list[str], problems: dict[int, EventProblem]
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


async def _ingest(
    services: Services, tenant_id: UUID, events: Sequence[UsageEventFields], *, strict: bool
) -> _Outcome:
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
                    )
            break
        except Exception as error:
            # Concurrent batches can still collide on a unique-index wait; the statement is the
            # whole transaction, so running it again is always safe.
            if db_errors.lost_a_race(error) and attempt < 2:
                continue
            raise
    crossings: list[_Crossing] = []
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
    return _Outcome(
        _results(events, statuses, problems),
        len(events) - rejected - duplicates,
        duplicates,
        rejected,
        crossings,
    )


async def _ingest_or_503(
    services: Services, tenant_id: UUID, events: Sequence[UsageEventFields], *, strict: bool
) -> _Outcome:
    try:
        return await _ingest(services, tenant_id, events, strict=strict)
    except Exception as error:
        if not db_errors.is_unavailable(error):
            raise
        log.warning("usage ingestion: database unavailable", exc_info=True)
        raise ServiceUnavailable(
            "the usage store is unavailable; retry with the same idempotency keys (events "
            "that were recorded are then reported as duplicates, never counted twice)"
        ) from error


def _row_key(row: tuple[str, str, Decimal, datetime, bytes | None]) -> str:
    return row[0]


async def _plan(services: Services, plan_id: UUID) -> Plan:
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
) -> list[_Crossing]:
    """Quota notifications (80 %, 100 %; once per period and metric) and soft-cap crossings,
    decided on the counters as the batch left them, written in one transaction after the
    batch's. The decision reads state, not deltas (a threshold reached and not yet marked, a
    soft cap exceeded and not yet stamped), so if this step is lost (the process dies between
    the two commits) the next batch for the metric does it; the marks are conditional updates,
    so concurrent batches notify once."""
    assert period.plan_id is not None
    assert period.period_start is not None
    plan = await _plan(services, period.plan_id)
    due: list[_Due] = []
    for counter in counters:
        if counter.metric not in plan.metrics:
            continue
        entitlement = _entitlement(plan, counter.metric, period.overrides)
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
    crossings: list[_Crossing] = []
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
                            "used": _text(item.counter.quantity),
                            "limit": limit,
                            "cap": item.entitlement.cap.value,
                            "period_start": period_start.isoformat(),
                        },
                    )
            if item.soft_cap_crossed and await usage_repo.mark_soft_cap_exceeded(
                conn, tenant_id, metric, period_start
            ):
                crossings.append(_Crossing(metric, period_start))
    return crossings


async def _open_grace_windows(
    services: Services, tenant_id: UUID, crossings: Sequence[_Crossing], actor: str
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


@router.post(
    "",
    status_code=201,
    response_model=UsageEventOut,
    responses={
        **error_responses(401, 403, 404, 409, 422, 503),
        200: {"description": "duplicate (already recorded)", "model": UsageEventOut},
    },
)
async def record_usage(
    event: UsageEventIn, principal: ManagePrincipal, services: ServicesDep
) -> JSONResponse:
    """Record one usage event. 201 when recorded, 200 when its idempotency key was already."""
    tenant_id = principal.require_tenant()
    fields: UsageEventFields = {
        "metric": event.metric,
        "quantity": event.quantity,
        "timestamp": event.timestamp,
        "idempotency_key": event.idempotency_key,
        "metadata": event.metadata,
    }
    outcome = await _ingest_or_503(services, tenant_id, [fields], strict=True)
    await _open_grace_windows(services, tenant_id, outcome.crossings, principal.actor)
    status = outcome.results[0]["status"]
    return JSONResponse(
        {"idempotency_key": event.idempotency_key, "status": status},
        status_code=201 if status == "accepted" else 200,
    )


def _batch_body_schema() -> dict[str, Any]:
    schema = UsageBatchIn.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)  # UsageEventIn is in the components already (single endpoint)
    return schema


@router.post(
    "/batch",
    response_model=UsageBatchOut,
    responses=error_responses(401, 403, 404, 409, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _batch_body_schema()}},
        }
    },
)
async def record_usage_batch(
    request: Request, principal: ManagePrincipal, services: ServicesDep
) -> JSONResponse:
    """Record up to `usage_batch_max_size` events in one transaction. Each event is reported as
    accepted, duplicate (its key was recorded before, or earlier in this batch) or rejected
    (with the field and reason; rejected events do not stop the others)."""
    tenant_id = principal.require_tenant()
    # Parsed by pydantic straight from the bytes (its JSON parser is in Rust): the body is the
    # hot path, and json.loads + validation of 1,000 events cost twice as much. Errors are
    # raised as FastAPI's own, so the one error mapping (422 naming fields) still applies.
    try:
        events = parse_usage_batch(await request.body())
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
        ) from None
    limit = services.settings.usage_batch_max_size
    if len(events) > limit:
        raise FieldInvalid("events", f"at most {limit} events per batch")
    outcome = await _ingest_or_503(services, tenant_id, events, strict=False)
    await _open_grace_windows(services, tenant_id, outcome.crossings, principal.actor)
    # Built by hand rather than through the response model: 1,000 result objects validated
    # again on the way out would cost more than the database write.
    return FastJSONResponse(
        {
            "accepted": outcome.accepted,
            "duplicates": outcome.duplicates,
            "rejected": outcome.rejected,
            "results": outcome.results,
        }
    )


# --- Quota check -------------------------------------------------------------------------------


def _quota_headers(decision: QuotaDecision, reset: datetime | None) -> dict[str, str]:
    headers = {
        "X-Quota-Limit": "unlimited" if decision.limit is None else str(decision.limit),
        "X-Quota-Used": _text(decision.used) or "0",
        "X-Quota-Remaining": "unlimited"
        if decision.remaining is None
        else (_text(decision.remaining) or "0"),
    }
    if reset is not None:
        headers["X-Quota-Reset"] = _utc(reset).isoformat().replace("+00:00", "Z")
    return headers


def _last_known(services: Services) -> dict[tuple[UUID, str], bool]:
    """(tenant, metric) -> may be allowed while the database is down: only soft-capped,
    unblocked metrics of active tenants, as seen by the last successful check."""
    cache = services.extras.get("quota_last_known")
    if not isinstance(cache, dict):
        cache = services.extras["quota_last_known"] = {}
    return cache


_CHECK_PARAMETERS = [
    {
        "name": "metric",
        "in": "query",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 64},
    },
    {
        "name": "quantity",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "pattern": r"^\d+(\.\d{1,6})?$", "default": "1"},
        "description": "quantity about to be used (decimal, default 1)",
    },
]


def _query_quantity(raw: str | None) -> Decimal:
    if raw is None:
        return Decimal(1)
    try:
        value = Decimal(raw)
    except ArithmeticError:
        raise FieldInvalid("quantity", "must be a decimal number", "query") from None
    if not value.is_finite() or value < 0:
        raise FieldInvalid("quantity", "must be a finite, non-negative number", "query")
    return value


@router.get(
    "/check",
    response_model=QuotaCheckOut,
    responses={
        **error_responses(401, 403, 404, 422, 503),
        402: {"description": "blocked", "model": QuotaCheckOut},
    },
    openapi_extra={"parameters": _CHECK_PARAMETERS, "security": [{"HTTPBearer": []}]},
)
async def check_quota(request: Request) -> JSONResponse:
    """May the tenant use `quantity` more of `metric` now? 200 allowed, 402 blocked (reason in
    the body), with X-Quota-Limit/Used/Remaining/Reset. Read-only: it reserves nothing.

    Fails closed: when the database does not answer within `quota_check_timeout_seconds`, the
    answer is 503 (not allowed), except for a metric the last successful check saw soft-capped
    and unblocked (a soft cap promises continued service; ADR 0003).

    The hot path of the API: authorization and parameters are handled here rather than through
    dependency injection (the same rules and errors; see `authorize_request`)."""
    services, principal = await authorize_request(request, Scope.READ)
    tenant_id = principal.require_tenant()
    metric = request.query_params.get("metric") or ""
    if not metric:
        raise FieldInvalid("metric", "is required", "query")
    quantity = _query_quantity(request.query_params.get("quantity"))
    if metric not in services.catalog.metrics:
        raise FieldInvalid("metric", "unknown metric", "query")
    cache = services.quota_cache
    row = cache.get(tenant_id, metric, datetime.now(UTC))
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
                plan = await _plan(services, row.plan_id)
    except Exception as error:
        if not db_errors.is_unavailable(error):
            raise
        log.warning("quota check: database unavailable", exc_info=True)
        soft_ok = _last_known(services).get((tenant_id, metric), False)
        body = {
            "allowed": soft_ok,
            "metric": metric,
            "reason": None if soft_ok else "quota_unavailable",
            "degraded": True,
        }
        return JSONResponse(
            body,
            status_code=200 if soft_ok else 503,
            headers={"Retry-After": "1", "X-Quota-Degraded": "true"},
        )
    if row is None:
        raise NotFound("tenant not found")
    if plan is None or row.period_end is None:
        body = {"allowed": False, "metric": metric, "reason": "no_active_subscription"}
        return JSONResponse(body, status_code=402)
    entitlement = effective_entitlement(
        plan.entitlement(metric),
        override_included=row.override_included,
        override_cap=row.override_cap,
    )
    decision = decide_quota(
        entitlement,
        used=row.used,
        requested=quantity,
        access_status=row.access_status,
        blocked=row.blocked,
        paused=row.subscription_status == Status.PAUSED,
    )
    _last_known(services)[(tenant_id, metric)] = (
        entitlement.cap is CapKind.SOFT and not row.blocked and row.access_status == "active"
    )
    body = {
        "allowed": decision.allowed,
        "metric": metric,
        "reason": decision.reason.value if decision.reason else None,
        "limit": decision.limit,
        "used": _text(decision.used),
        "remaining": _text(decision.remaining),
        "reset": _utc(row.period_end).isoformat(),
        "in_grace": decision.in_grace,
    }
    return JSONResponse(
        body,
        status_code=200 if decision.allowed else 402,
        headers=_quota_headers(decision, row.period_end),
    )


# --- Reads ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Period:
    start: datetime
    end: datetime
    plan: Plan
    overrides: dict[str, tuple[int | None, str | None]]


async def _current_period(services: Services, conn: Connection, tenant_id: UUID) -> _Period:
    period = await usage_repo.open_period(conn, tenant_id)
    if period is None:
        raise NotFound("tenant not found")
    if period.plan_id is None or period.period_start is None or period.period_end is None:
        raise NotFound("this tenant has no subscription with an open billing period")
    plan = await plan_cache(services).get(conn, period.plan_id)
    return _Period(period.period_start, period.period_end, plan, period.overrides)


@router.get("", response_model=UsageSummaryOut, responses=error_responses(401, 403, 404))
async def usage_summary(principal: ReadPrincipal, services: ServicesDep) -> UsageSummaryOut:
    """This period's usage of every metric: used, limit, remaining, percent, reset."""
    tenant_id = principal.require_tenant()
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        period = await _current_period(services, conn, tenant_id)
        counters = await usage_repo.period_counters(conn, tenant_id, period.start)
    metrics = []
    for code, definition in services.catalog.metrics.items():
        if code not in period.plan.metrics:
            continue
        entitlement = _entitlement(period.plan, code, period.overrides)
        counter = counters.get(code)
        used = counter.quantity if counter else Decimal(0)
        limit = entitlement.included
        metrics.append(
            MetricUsage(
                metric=code,
                unit=definition.unit,
                aggregation=definition.aggregation.value,
                used=_text(used) or "0",
                limit=limit,
                remaining=None if limit is None else _text(max(Decimal(0), limit - used)),
                percent=None if not limit else round(float(used * 100 / limit), 2),
                cap=entitlement.cap.value,
                blocked=bool(counter and counter.blocked and limit is not None and used >= limit),
                reset=period.end,
            )
        )
    return UsageSummaryOut(period_start=period.start, period_end=period.end, metrics=metrics)


@router.get("/quotas", response_model=list[QuotaOut], responses=error_responses(401, 403, 404))
async def quotas(principal: ReadPrincipal, services: ServicesDep) -> list[QuotaOut]:
    """The entitlements in force: the plan's, with operator overrides applied."""
    tenant_id = principal.require_tenant()
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        period = await _current_period(services, conn, tenant_id)
    out = []
    for code in period.plan.metrics:
        e = _entitlement(period.plan, code, period.overrides)
        out.append(
            QuotaOut(
                metric=code,
                included=e.included,
                cap=e.cap.value,
                overage_unit_price=e.overage_unit_price,
                overage_unit_size=e.overage_unit_size,
                overridden=code in period.overrides,
            )
        )
    return out


@router.get(
    "/export.csv",
    response_class=StreamingResponse,
    responses={**error_responses(401, 403, 422), 200: {"content": {"text/csv": {}}}},
)
async def export_events(
    principal: ReadPrincipal,
    services: ServicesDep,
    start: Annotated[date, Query(description="first UTC day, inclusive")],
    end: Annotated[date, Query(description="last UTC day, inclusive")],
) -> StreamingResponse:
    """Raw events with occurred_at in [start, end] (UTC days) as CSV, streamed from a cursor."""
    tenant_id = principal.require_tenant()
    if end < start:
        raise FieldInvalid("end", "must not be before start")
    if (end - start).days > 366:
        raise FieldInvalid("end", "a range covers at most 366 days")
    first = datetime.combine(start, time(), tzinfo=UTC)
    after = datetime.combine(end + timedelta(days=1), time(), tzinfo=UTC)

    # The query runs before the answer starts: an unreachable database is a 503, not a 200
    # whose body breaks off. The transaction then lives as long as the stream.
    stack = contextlib.AsyncExitStack()
    try:
        conn = await stack.enter_async_context(services.tenant_db.tenant_transaction(tenant_id))
        rows = usage_repo.stream_events(conn, tenant_id, first, after)
        head = await anext(rows, None)
    except BaseException:
        await stack.aclose()
        raise

    async def lines() -> AsyncIterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(
            ["occurred_at", "metric", "quantity", "idempotency_key", "metadata", "received_at"]
        )
        try:
            row = head
            count = 0
            while row is not None:
                occurred, metric, quantity, key, metadata, received = row
                writer.writerow(
                    [
                        _utc(occurred).isoformat(),
                        metric,
                        _text(quantity),
                        key,
                        metadata or "",
                        _utc(received).isoformat(),
                    ]
                )
                count += 1
                if count % 500 == 0:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
                row = await anext(rows, None)
            yield buffer.getvalue()
        finally:
            await stack.aclose()

    filename = f"usage-{start.isoformat()}-{end.isoformat()}.csv"
    return StreamingResponse(
        lines(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.get(
    "/{metric}", response_model=MetricSeriesOut, responses=error_responses(401, 403, 404, 422)
)
async def metric_series(
    metric: str, principal: ReadPrincipal, services: ServicesDep
) -> MetricSeriesOut:
    """This period's daily series of one metric (days with no usage are absent)."""
    tenant_id = principal.require_tenant()
    if metric not in services.catalog.metrics:
        raise FieldInvalid("metric", "unknown metric")
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        period = await _current_period(services, conn, tenant_id)
        days = await usage_repo.daily_series(
            conn,
            tenant_id,
            metric,
            _utc(period.start).date(),
            _utc(period.end - timedelta(microseconds=1)).date(),
        )
        counters = await usage_repo.period_counters(conn, tenant_id, period.start)
    counter = counters.get(metric)
    return MetricSeriesOut(
        metric=metric,
        period_start=period.start,
        period_end=period.end,
        used=_text(counter.quantity if counter else Decimal(0)) or "0",
        days=[
            DailyUsage(date=d.usage_date, quantity=_text(d.quantity) or "0", events=d.event_count)
            for d in days
        ],
    )
