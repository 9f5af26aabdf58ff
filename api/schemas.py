"""HTTP schemas (pydantic), separate from the Temporal payloads in workflows/io.py."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from adapters.api_keys import Scope


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr | None = None


class TenantOut(BaseModel):
    id: UUID
    name: str
    email: str | None
    access_status: str
    stripe_customer_id: str | None
    created_at: datetime


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Literal[Scope.READ, Scope.MANAGE]] = Field(min_length=1)


class ApiKeyOut(BaseModel):
    id: UUID
    tenant_id: UUID | None
    name: str
    prefix: str
    scopes: list[str]
    revoked_at: datetime | None
    created_at: datetime


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The API key. Shown once: only its hash is stored.")


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan_code: str = Field(min_length=1, max_length=50)
    interval: Literal["month", "year"] = "month"
    payment_method_id: str | None = Field(default=None, max_length=255)


class SubscriptionOut(BaseModel):
    id: UUID
    tenant_id: UUID
    plan_code: str
    plan_version: int
    interval: str
    currency: str
    status: str
    workflow_id: str
    current_period_start: datetime | None
    current_period_end: datetime | None
    trial_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ComponentHealth(BaseModel):
    status: Literal["ok", "down"]
    detail: str | None = None


class Readiness(BaseModel):
    status: Literal["ok", "down"]
    components: dict[str, ComponentHealth]


class WebhookEventOut(BaseModel):
    stripe_event_id: str
    type: str
    status: str
    tenant_id: UUID | None
    attempts: int
    last_error: str | None
    replay_count: int
    received_at: datetime
    processed_at: datetime | None


class WebhookReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Event ids to replay; omit and set `all_dead_lettered` to replay every dead letter.
    event_ids: list[str] | None = Field(default=None, min_length=1, max_length=1000)
    all_dead_lettered: bool = False


class WebhookReplayOut(BaseModel):
    event_id: str
    replay: int
    workflow_id: str
    started: bool


class NotificationEndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://")
    # None: every event type.
    event_types: list[str] | None = None


class NotificationEndpointOut(BaseModel):
    id: UUID
    url: str
    event_types: list[str] | None
    enabled: bool
    created_at: datetime


class NotificationEndpointCreated(NotificationEndpointOut):
    # Shown once: the tenant verifies our signatures with it.
    secret: str
