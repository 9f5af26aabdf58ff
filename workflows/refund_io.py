"""Payload types of a credit note's workflows (ADR 0020): its refund (`credit_note_refund`) and
the lower amount due of an open invoice (`credit_note_open_invoice`)."""

from __future__ import annotations

from dataclasses import dataclass

from workflows.shared_io import StripeInvoiceRead


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
    # The Stripe credit note that lowered an open invoice's amount due ("" for the others).
    stripe_credit_note_id: str = ""


@dataclass(frozen=True)
class RefundResult:
    credit_note_id: str
    stripe_refund_id: str
    status: str


@dataclass(frozen=True)
class OpenInvoiceCreditInput:
    tenant_id: str
    credit_note_id: str
    invoice_id: str
    stripe_invoice_id: str
    amount: int
    # The invoice's subscription, told when the credit settles the invoice; None for none.
    subscription_id: str | None = None
    stripe_task_queue: str = "billing-stripe"


@dataclass(frozen=True)
class OpenInvoiceCreditRequest:
    tenant_id: str
    credit_note_id: str
    stripe_invoice_id: str
    amount: int


@dataclass(frozen=True)
class OpenInvoiceCredited:
    stripe_credit_note_id: str
    amount: int
    # The invoice after the credit note (`paid` when it was credited in full).
    invoice: StripeInvoiceRead
