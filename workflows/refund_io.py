"""Payload types of a credit note's refund (`credit_note_refund`, ADR 0020)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RefundInput:
    tenant_id: str
    credit_note_id: str
    stripe_invoice_id: str
    amount: int
    stripe_task_queue: str = "billing-stripe"


@dataclass(frozen=True)
class RefundRequest:
    tenant_id: str
    credit_note_id: str
    stripe_invoice_id: str
    amount: int


@dataclass(frozen=True)
class RefundMade:
    stripe_refund_id: str
    amount: int
    status: str


@dataclass(frozen=True)
class RecordRefundInput:
    tenant_id: str
    credit_note_id: str
    # "" when Stripe refused the refund (status `failed`).
    stripe_refund_id: str
    status: str
    actor: str


@dataclass(frozen=True)
class RefundResult:
    credit_note_id: str
    stripe_refund_id: str
    status: str
