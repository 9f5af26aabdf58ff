"""Payload types of the lost-webhook sweeper (`reconcile_stripe`, ADR 0013)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SweepInput:
    # Invoices open (or with a payment attempt in flight) for longer than this are re-read.
    min_age_seconds: float = 3600.0
    stripe_task_queue: str = "billing-stripe"
    # At most this many per run, oldest first; the next run takes the rest.
    limit: int = 500


@dataclass(frozen=True)
class StaleInvoice:
    tenant_id: str
    invoice_id: str
    subscription_id: str | None
    stripe_invoice_id: str
    status: str
    amount_due: int
    amount_paid: int


@dataclass(frozen=True)
class StaleInvoices:
    invoices: list[StaleInvoice] = field(default_factory=list)


@dataclass(frozen=True)
class InvoiceDrift:
    tenant_id: str
    invoice_id: str
    field: str
    engine: str
    stripe: str


@dataclass(frozen=True)
class DriftReport:
    drift: list[InvoiceDrift] = field(default_factory=list)


@dataclass(frozen=True)
class SweepResult:
    checked: int
    # Findings sent to their subscription as the webhook Stripe would have delivered.
    applied: int
    drift: list[InvoiceDrift] = field(default_factory=list)
