"""Temporal payloads: one dataclass in and one out for every workflow, activity and message.

They are stored in workflow histories: add fields only with defaults, never rename or remove one
while a running workflow may still replay it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PlanSnapshot:
    """A plan version as it was when the workflow started (billing.catalog.Plan.to_dict())."""

    plan_id: str
    code: str
    version: int
    definition: dict[str, Any]


@dataclass(frozen=True)
class SubscriptionInput:
    subscription_id: str
    tenant_id: str
    tenant_name: str
    tenant_email: str | None
    plan: PlanSnapshot
    interval: str
    stripe_task_queue: str
    actor: str
    # Demo clock: durations of the billing calendar are divided by this factor (1.0 = real time).
    time_scale: float = 1.0
    payment_method_id: str | None = None


@dataclass(frozen=True)
class SubscriptionResult:
    subscription_id: str
    status: str


@dataclass(frozen=True)
class EnsureCustomerInput:
    tenant_id: str
    name: str
    email: str | None


@dataclass(frozen=True)
class EnsureCustomerResult:
    customer_id: str


@dataclass(frozen=True)
class RecordCustomerInput:
    tenant_id: str
    customer_id: str


@dataclass(frozen=True)
class RecordCustomerResult:
    recorded: bool


@dataclass(frozen=True)
class SubscriptionProjection:
    """The subscription row as the workflow sees it; `version` only ever grows."""

    subscription_id: str
    tenant_id: str
    version: int
    status: str
    plan_id: str
    plan_code: str
    interval: str
    current_period_start: str | None = None
    current_period_end: str | None = None
    trial_end: str | None = None
    cancel_at_period_end: bool = False
    canceled_at: str | None = None
    paused_at: str | None = None
    resume_at: str | None = None
    pending_change: dict[str, Any] | None = None


@dataclass(frozen=True)
class ProjectionResult:
    applied: bool


@dataclass(frozen=True)
class SubscriptionState:
    """Answer of the `state` query."""

    subscription_id: str
    tenant_id: str
    status: str
    plan_code: str
    interval: str
    stripe_customer_id: str | None
    current_period_start: str | None
    current_period_end: str | None
    trial_end: str | None
    version: int
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StripeEventSignal:
    """A verified Stripe event, routed to the subscription workflow it concerns (signal
    `stripe_event`). The receiver remembers `event_id`s it has applied, so a replayed or
    duplicated event changes nothing. Object fields were re-read from Stripe where order
    matters (e.g. the invoice's current status), so a late event cannot move state backwards."""

    event_id: str
    event_type: str
    stripe_object_id: str | None = None
    # Engine invoice id (from the metadata the engine wrote on the Stripe invoice).
    invoice_id: str | None = None
    stripe_invoice_id: str | None = None
    # The invoice's status as re-read from Stripe when the event was processed.
    invoice_status: str | None = None
    amount_paid: int | None = None
    hosted_invoice_url: str | None = None
    stripe_payment_method_id: str | None = None
    failure_message: str | None = None


@dataclass(frozen=True)
class RetrySchedule:
    """Attempts and exponential backoff, snapshotted from settings when a workflow starts."""

    max_attempts: int
    initial_backoff_seconds: float
    max_backoff_seconds: float

    def backoff_seconds(self, attempt: int) -> float:
        """Wait after failed attempt number `attempt` (1-based): initial * 2^(attempt-1), capped."""
        return float(
            min(self.max_backoff_seconds, self.initial_backoff_seconds * 2 ** (attempt - 1))
        )


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


@dataclass(frozen=True)
class RereadInvoiceInput:
    stripe_invoice_id: str


@dataclass(frozen=True)
class RereadInvoiceResult:
    stripe_invoice_id: str
    status: str
    amount_paid: int
    hosted_invoice_url: str | None
    metadata: dict[str, str] = field(default_factory=dict)


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


@dataclass(frozen=True)
class SendNotificationInput:
    """Queue one notification for every endpoint of the tenant and start its deliveries.
    `message_id` is the notification's business identity (e.g. `invoice.paid:{invoice_id}`)."""

    tenant_id: str
    event_type: str
    message_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class SendNotificationResult:
    delivery_ids: list[str]


@dataclass(frozen=True)
class NotificationDeliveryInput:
    """Input of the `notification_delivery` workflow (`notification:{delivery_id}`)."""

    delivery_id: str
    schedule: RetrySchedule


@dataclass(frozen=True)
class NotificationDeliveryResult:
    delivery_id: str
    # delivered | dead_lettered
    status: str
    attempts: int


@dataclass(frozen=True)
class DeliverNotificationInput:
    delivery_id: str
    attempt: int


@dataclass(frozen=True)
class DeliverNotificationResult:
    delivered: bool
    status_code: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class MarkNotificationInput:
    delivery_id: str
    # delivered | dead_lettered; None records a failed attempt.
    status: str | None
    attempts: int
    error: str | None = None


@dataclass(frozen=True)
class MarkNotificationResult:
    updated: bool
