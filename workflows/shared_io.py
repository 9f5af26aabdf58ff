"""Payload shapes more than one workflow exchanges: a Stripe invoice as read, the invoice
projection, a retry schedule, a notification queued with a write.

Stored in workflow histories: add fields only with defaults, never rename or remove one while a
running workflow may still replay it. Timestamps are ISO 8601 strings in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
class RereadInvoiceInput:
    stripe_invoice_id: str


@dataclass(frozen=True)
class StripeInvoiceRead:
    """A Stripe invoice as an activity read or wrote it: the one shape every workflow gets back
    (it replaced three: fields missing in older histories take their defaults)."""

    stripe_invoice_id: str
    status: str
    amount_due: int = 0
    amount_paid: int = 0
    hosted_invoice_url: str | None = None
    invoice_pdf: str | None = None
    # The engine's ids written on the invoice (`invoice_id`, `tenant_id`, `subscription_id`).
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DunningNotification:
    """One outbound notification, queued in the same transaction as the change it reports.
    `message_id` is deterministic so a retried activity never notifies twice."""

    event_type: str
    message_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class InvoiceProjection:
    """The engine's invoice row as a workflow projects it (`project_invoice` from the
    subscription, `project_dunning_invoice` from dunning); `version` only ever grows, so an older
    write never overwrites a newer one."""

    invoice_id: str
    version: int
    status: str
    amount_paid: int = 0
    stripe_invoice_id: str | None = None
    hosted_invoice_url: str | None = None
    invoice_pdf: str | None = None
    attempt_count: int = 0
    paid_at: str | None = None
    # The collection attempt this write reports (subscription collections).
    attempt_outcome: str | None = None
    decline_code: str | None = None
    failure_message: str | None = None
    attempted_at: str | None = None
    # None only in histories recorded before the field existed (the row then says whose it is).
    tenant_id: str | None = None
    # The API request whose command caused this write (ADR 0019); None for the workflow's own.
    request_id: str | None = None
    # Queued in the same transaction, only when the write applies (dunning).
    notifications: list[DunningNotification] = field(default_factory=list)
    # Dunning's paid write: what recovered the invoice (retry, new_card, paid_out_of_band).
    recovered_by: str | None = None


@dataclass(frozen=True)
class ProjectionResult:
    applied: bool
