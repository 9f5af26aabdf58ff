"""HTTP schemas of the usage endpoints (pydantic). Kept lean: a batch of 1,000 events is validated
on every ingestion request, so there are no per-event validators beyond the field types."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, NotRequired
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, with_config
from typing_extensions import TypedDict

# The event's fields, once: the single endpoint's model and the batch's parser share them.
Metric = Annotated[str, Field(min_length=1, max_length=64, examples=["llm_tokens"])]
# Decimal, never float: 0.1 GB must stay 0.1. NaN and infinities are refused here.
Quantity = Annotated[Decimal, Field(allow_inf_nan=False, examples=["1500"])]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=255)]
Metadata = dict[str, Any] | None
# The caller's wall clock, with a UTC offset; omitted: the moment the API receives it. Under a
# demo clock (`--time-scale`) the engine maps it to the subscription's business time.
Timestamp = Annotated[
    datetime | None, Field(description="when it happened, on the caller's wall clock")
]


class UsageEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: Metric
    quantity: Quantity
    timestamp: Timestamp = None
    idempotency_key: IdempotencyKey
    metadata: Metadata = None


@with_config(ConfigDict(extra="forbid"))
class UsageEventFields(TypedDict):
    """`UsageEventIn` as a plain dict: what the batch endpoint parses 1,000 of per request
    (a model instance per event cost ~20 % of the parse)."""

    metric: Metric
    quantity: Quantity
    timestamp: NotRequired[Timestamp]
    idempotency_key: IdempotencyKey
    metadata: NotRequired[Metadata]


class UsageBatchIn(BaseModel):
    """The batch body as documented in OpenAPI; requests are parsed by `parse_usage_batch`."""

    model_config = ConfigDict(extra="forbid")
    # The upper bound is the `usage_batch_max_size` setting, checked in the route.
    events: list[UsageEventIn] = Field(min_length=1)


@with_config(ConfigDict(extra="forbid"))
class _UsageBatchFields(TypedDict):
    events: Annotated[list[UsageEventFields], Field(min_length=1)]


_batch_adapter = TypeAdapter(_UsageBatchFields)


def parse_usage_batch(body: bytes) -> list[UsageEventFields]:
    """The batch's events, parsed and validated straight from the JSON bytes (pydantic-core's
    parser). Raises pydantic's ValidationError, with the same locations as `UsageBatchIn`."""
    return _batch_adapter.validate_json(body)["events"]


class UsageEventResult(BaseModel):
    index: int
    idempotency_key: str
    status: Literal["accepted", "duplicate", "rejected"]
    field: str | None = None
    reason: str | None = None


class UsageBatchOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[UsageEventResult]


class UsageEventOut(BaseModel):
    idempotency_key: str
    status: Literal["accepted", "duplicate"]


class QuotaCheckOut(BaseModel):
    allowed: bool
    metric: str
    reason: str | None
    limit: int | None
    used: str
    remaining: str | None
    reset: datetime
    in_grace: bool


class MetricUsage(BaseModel):
    metric: str
    unit: str
    aggregation: str
    used: str
    limit: int | None
    remaining: str | None
    percent: float | None = Field(description="used / limit x 100, for display only")
    cap: str
    blocked: bool
    reset: datetime


class UsageSummaryOut(BaseModel):
    period_start: datetime
    period_end: datetime
    metrics: list[MetricUsage]


class DailyUsage(BaseModel):
    date: date
    quantity: str
    events: int


class MetricSeriesOut(BaseModel):
    metric: str
    period_start: datetime
    period_end: datetime
    used: str
    days: list[DailyUsage]


class QuotaOut(BaseModel):
    metric: str
    included: int | None
    cap: str
    overage_unit_price: int
    overage_unit_size: int
    overridden: bool


class QuotaOverrideIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    included: int | None = Field(default=None, ge=0)
    cap: Literal["hard", "soft"] | None = None
    reason: str = Field(min_length=1, max_length=500)
    expires_at: datetime | None = None


class QuotaOverrideOut(BaseModel):
    tenant_id: UUID
    metric: str
    included: int | None
    cap: str | None


class ReconcileIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    first: date
    last: date
    repair: bool = True
    reason: str | None = Field(default=None, max_length=500)


class DriftOut(BaseModel):
    tenant_id: UUID
    metric: str
    usage_date: date | None
    period_start: datetime | None
    recorded: str | None
    recomputed: str | None


class ReconcileOut(BaseModel):
    first: date
    last: date
    drift: list[DriftOut]
    repaired: int
