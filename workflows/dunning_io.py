"""Temporal payloads of the dunning workflow (`dunning:{invoice_id}`) and its activities.

Stored in workflow histories: add fields only with defaults, never rename or remove one while a
running workflow may still replay it. Timestamps are ISO 8601 strings in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from workflows.shared_io import DunningNotification, StripeInvoiceRead


@dataclass(frozen=True)
class DunningInput:
    invoice_id: str
    stripe_invoice_id: str
    tenant_id: str
    subscription_id: str
    currency: str
    amount_due: int
    hosted_invoice_url: str | None
    # billing.dunning.DunningPolicy.to_dict(), taken when dunning started.
    policy: dict[str, Any]
    stripe_task_queue: str
    # Demo clock: the schedule's days are divided by this factor (1.0 = real time).
    time_scale: float = 1.0
    # Attempt 1 was the renewal's own collection; dunning numbers its attempts from here.
    first_attempt: int = 2
    # `invoices.version` when dunning started. While dunning runs it is the only writer of the
    # invoice row and projects with versions above this one.
    invoice_version: int = 0


@dataclass(frozen=True)
class DunningResult:
    invoice_id: str
    # recovered | paid_out_of_band | exhausted | voided_elsewhere
    outcome: str
    # Payment attempts made by this workflow (not counting the ones before it started).
    attempts: int
    # The invoice status in Stripe at the end: paid | uncollectible | void | open.
    final_invoice_status: str
    # The last attempt number used (`invoices.attempt_count`).
    last_attempt: int = 0
    # The last `invoices.version` written, so the parent can continue the sequence above it.
    invoice_version: int = 0
    # When the schedule ran out (outcome exhausted): the parent's cancel delay counts from here.
    exhausted_at: str | None = None


@dataclass(frozen=True)
class PaymentMethodUpdated:
    """Signal `payment_method_updated`: the customer has a new card; retry at once. From a
    webhook (`payment_method.attached`/`updated`) or the API; deduplicated by `event_id`."""

    event_id: str
    payment_method_id: str | None = None


@dataclass(frozen=True)
class InvoicePaid:
    """Signal `invoice_paid`: the invoice was (reportedly) paid out of band, e.g. on the hosted
    page. The workflow re-reads the invoice before stopping; deduplicated by `event_id`."""

    event_id: str


@dataclass(frozen=True)
class DunningState:
    """Answer of the `state` query (for operators and tests; the API reads Postgres)."""

    invoice_id: str
    # waiting | attempting | closing | finished
    phase: str
    attempts: int
    last_attempt: int
    scheduled_done: int
    scheduled_total: int
    next_attempt_at: str | None
    outcome: str | None
    handled_event_ids: list[str] = field(default_factory=list)
    ignored_duplicate_signals: int = 0


@dataclass(frozen=True)
class RetryPaymentInput:
    stripe_invoice_id: str
    # `pay:{invoice_id}:{attempt}`: derived by the workflow from business identity.
    idempotency_key: str


@dataclass(frozen=True)
class RetryPaymentResult:
    succeeded: bool
    requires_action: bool
    decline_code: str | None
    failure_message: str | None
    invoice: StripeInvoiceRead


@dataclass(frozen=True)
class RecordAttemptInput:
    tenant_id: str
    invoice_id: str
    attempt: int
    idempotency_key: str
    attempted_at: str
    # succeeded | declined | requires_action | error
    outcome: str
    decline_code: str | None = None
    failure_message: str | None = None
    notifications: list[DunningNotification] = field(default_factory=list)
    # What started the attempt: retry (the schedule) or new_card (None in older histories).
    cause: str | None = None


@dataclass(frozen=True)
class RecordAttemptResult:
    # False when a retried activity found the attempt already recorded.
    recorded: bool


@dataclass(frozen=True)
class FinalActionInput:
    invoice_id: str
    stripe_invoice_id: str
    # mark_uncollectible | void
    action: str


@dataclass(frozen=True)
class FinalActionResult:
    """The invoice after the final action; `status` is `paid` if it was paid just before."""

    invoice: StripeInvoiceRead
