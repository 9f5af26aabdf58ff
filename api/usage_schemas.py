"""HTTP schemas of the usage endpoints (pydantic). Kept lean: a batch of 1,000 events is validated
on every ingestion request, so there are no per-event validators beyond the field types."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


class UsageEventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: str = Field(min_length=1, max_length=64, examples=["llm_tokens"])
    # Decimal, never float: 0.1 GB must stay 0.1. NaN and infinities are refused here.
    quantity: Decimal = Field(allow_inf_nan=False, examples=["1500"])
    timestamp: datetime
    idempotency_key: str = Field(min_length=1, max_length=255)
    metadata: dict[str, Any] | None = None


class UsageBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # The upper bound is the `usage_batch_max_size` setting, checked in the route.
    events: list[UsageEventIn] = Field(min_length=1)


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
