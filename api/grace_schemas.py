"""HTTP schemas of the operator grace-period endpoints (pydantic)."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

# An operator extends a grace window by at most this much per call: a longer forgiveness is a
# waiver (`resolve`), not an extension.
MAX_EXTENSION_DAYS = 30


class GracePeriodOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: UUID
    tenant_id: UUID
    kind: str
    subject: str
    workflow_id: str
    started_at: datetime
    expires_at: datetime
    resolved_at: datetime | None
    resolution: str | None
    actor: str | None


class GracePeriodList(BaseModel):
    items: list[GracePeriodOut]


class GraceExtendIn(BaseModel):
    """Push the deadline back by `hours` and/or `days` (summed; at most 30 days in all)."""

    model_config = ConfigDict(extra="forbid")
    hours: float | None = Field(default=None, gt=0, le=MAX_EXTENSION_DAYS * 24)
    days: float | None = Field(default=None, gt=0, le=MAX_EXTENSION_DAYS)
    reason: str | None = Field(default=None, max_length=500)


class GraceActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=500)


class GraceExtendedOut(BaseModel):
    workflow_id: str
    started_at: datetime
    expires_at: datetime


class GraceActionOut(BaseModel):
    workflow_id: str
    # "ended" (expiry effect applied now) or "waived" (closed without it / suspension lifted)
    action: str
