"""Temporal payloads of the `stripe_event` workflow (`stripe-event:{event_id}`) and its
activities.

Stored in workflow histories: add fields only with defaults, never rename or remove one while a
running workflow may still replay it. Timestamps are ISO 8601 strings in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass

from workflows.shared_io import RetrySchedule


@dataclass(frozen=True)
class StripeEventInput:
    """Input of the `stripe_event` workflow (`stripe-event:{event_id}[:replay:{n}]`)."""

    event_id: str
    schedule: RetrySchedule
    stripe_task_queue: str
    replay: int = 0


@dataclass(frozen=True)
class StripeEventResult:
    event_id: str
    # processed | ignored | dead_lettered
    status: str
    attempts: int
    detail: str | None = None


@dataclass(frozen=True)
class ResolveStripeEventInput:
    event_id: str


@dataclass(frozen=True)
class ResolvedStripeEvent:
    """What an inbox event concerns: ids from the engine's metadata first, then DB lookups."""

    event_id: str
    event_type: str
    handling: str
    stripe_object_id: str | None = None
    tenant_id: str | None = None
    subscription_id: str | None = None
    invoice_id: str | None = None
    stripe_invoice_id: str | None = None
    stripe_customer_id: str | None = None
    stripe_payment_method_id: str | None = None
    invoice_status: str | None = None
    amount_paid: int | None = None
    hosted_invoice_url: str | None = None
    failure_message: str | None = None
    # A dispute's payment (ADR 0021): what the disputed invoice is found by in Stripe.
    payment_intent_id: str | None = None
    charge_id: str | None = None


@dataclass(frozen=True)
class FindPaymentInvoiceInput:
    payment_intent_id: str | None
    charge_id: str | None


@dataclass(frozen=True)
class PaymentInvoice:
    stripe_invoice_id: str | None


@dataclass(frozen=True)
class ApplyDisputeInput:
    event_id: str
    stripe_invoice_id: str


@dataclass(frozen=True)
class DisputeApplied:
    status: str  # processed | ignored
    detail: str | None = None


@dataclass(frozen=True)
class ProjectStripeEventInput:
    event_id: str
    tenant_id: str | None


@dataclass(frozen=True)
class ProjectStripeEventResult:
    applied: bool


@dataclass(frozen=True)
class MarkStripeEventInput:
    event_id: str
    # processed | ignored | dead_lettered; None records a failed attempt and keeps the status.
    status: str | None
    attempts: int
    error: str | None = None


@dataclass(frozen=True)
class MarkStripeEventResult:
    updated: bool
