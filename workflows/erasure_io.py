"""Payload types of a tenant's erasure (`tenant_erasure`, ADR 0018)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ErasureInput:
    tenant_id: str
    requested_by: str
    reason: str | None = None
    stripe_task_queue: str = "billing-stripe"


@dataclass(frozen=True)
class TenantRef:
    tenant_id: str


@dataclass(frozen=True)
class ErasureSubjectsOut:
    found: bool
    stripe_customer_id: str | None = None
    payment_method_ids: list[str] = field(default_factory=list)
    live_subscription_ids: list[str] = field(default_factory=list)
    # Personal values to redact from the audit details (the name and email as they were).
    terms: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CancelForErasure:
    tenant_id: str
    subscription_id: str
    actor: str


@dataclass(frozen=True)
class EraseStripeInput:
    customer_id: str
    payment_method_ids: list[str]


@dataclass(frozen=True)
class TombstoneInput:
    tenant_id: str
    terms: list[str]
    actor: str
    reason: str | None = None


@dataclass(frozen=True)
class ErasureStep:
    step: str
    detail: str = ""


@dataclass(frozen=True)
class ErasureResult:
    tenant_id: str
    steps: list[ErasureStep] = field(default_factory=list)
