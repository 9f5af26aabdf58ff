"""`/api/billing/usage`: ingestion (single and batch), the quota check, and usage reads.

Ingestion and the quota check are use cases of `services/usage.py`; the routes parse the body
(the batch straight from its bytes), authorise, and shape the answer, its status and its quota
headers. The reads (summary, quotas, export, series) go to the repositories directly.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError

from adapters.api_keys import Scope
from adapters.db import usage as usage_repo
from adapters.db.session import Connection
from api.auth import AuthFirstRoute, ManagePrincipal, ReadPrincipal, ServicesDep, authorize_request
from api.errors import (
    FieldInvalid,
    NotFound,
    error_responses,
)
from api.fastjson import FastJSONResponse
from api.usage_schemas import (
    DailyUsage,
    MetricSeriesOut,
    MetricUsage,
    QuotaCheckOut,
    QuotaOut,
    UsageBatchIn,
    UsageBatchOut,
    UsageEventIn,
    UsageEventOut,
    UsageSummaryOut,
    parse_usage_batch,
)
from billing.catalog import Plan
from billing.usage import (
    QuotaDecision,
)
from services import usage as usage_service
from services.context import Services
from services.usage import UsageEvent, granted_entitlement, plan_cache, text, utc

router = APIRouter(route_class=AuthFirstRoute, prefix="/api/billing/usage", tags=["usage"])
log = logging.getLogger("billing.api.usage")


# --- Shared helpers ----------------------------------------------------------------------------


# --- Ingestion -------------------------------------------------------------------------------


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
    fields: UsageEvent = {
        "metric": event.metric,
        "quantity": event.quantity,
        "timestamp": event.timestamp,
        "idempotency_key": event.idempotency_key,
        "metadata": event.metadata,
    }
    outcome = await usage_service.ingest(
        services, tenant_id, [fields], strict=True, actor=principal.actor
    )
    await usage_service.open_grace_windows(services, tenant_id, outcome.crossings, principal.actor)
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
    outcome = await usage_service.ingest(
        services, tenant_id, events, strict=False, actor=principal.actor
    )
    await usage_service.open_grace_windows(services, tenant_id, outcome.crossings, principal.actor)
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
        "X-Quota-Used": text(decision.used) or "0",
        "X-Quota-Remaining": "unlimited"
        if decision.remaining is None
        else (text(decision.remaining) or "0"),
    }
    if reset is not None:
        headers["X-Quota-Reset"] = utc(reset).isoformat().replace("+00:00", "Z")
    return headers


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
    answer = await usage_service.check_quota(services, tenant_id, metric, quantity)
    if answer.degraded:
        return JSONResponse(
            answer.body,
            status_code=200 if answer.allowed else 503,
            headers={"Retry-After": "1", "X-Quota-Degraded": "true"},
        )
    if answer.decision is None:  # no active subscription
        return JSONResponse(answer.body, status_code=402)
    return JSONResponse(
        answer.body,
        status_code=200 if answer.allowed else 402,
        headers=_quota_headers(answer.decision, answer.reset),
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
        entitlement = granted_entitlement(period.plan, code, period.overrides)
        counter = counters.get(code)
        used = counter.quantity if counter else Decimal(0)
        limit = entitlement.included
        metrics.append(
            MetricUsage(
                metric=code,
                unit=definition.unit,
                aggregation=definition.aggregation.value,
                used=text(used) or "0",
                limit=limit,
                remaining=None if limit is None else text(max(Decimal(0), limit - used)),
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
        e = granted_entitlement(period.plan, code, period.overrides)
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
                        utc(occurred).isoformat(),
                        metric,
                        text(quantity),
                        key,
                        metadata or "",
                        utc(received).isoformat(),
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
            utc(period.start).date(),
            utc(period.end - timedelta(microseconds=1)).date(),
        )
        counters = await usage_repo.period_counters(conn, tenant_id, period.start)
    counter = counters.get(metric)
    return MetricSeriesOut(
        metric=metric,
        period_start=period.start,
        period_end=period.end,
        used=text(counter.quantity if counter else Decimal(0)) or "0",
        days=[
            DailyUsage(date=d.usage_date, quantity=text(d.quantity) or "0", events=d.event_count)
            for d in days
        ],
    )
