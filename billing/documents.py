"""An invoice as a document: what its PDF shows, built from the engine's rows (ADR 0015). Pure:
the rendering is `adapters/invoice_pdf.py`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from billing.money import format_amount


@dataclass(frozen=True)
class Party:
    name: str
    address: tuple[str, ...] = ()
    tax_id: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class DocumentLine:
    description: str
    amount: int
    period_start: datetime | None = None
    period_end: datetime | None = None


@dataclass(frozen=True)
class InvoiceDocument:
    number: str | None  # None: a draft
    status: str
    issued_at: datetime
    currency: str
    seller: Party
    buyer: Party
    lines: tuple[DocumentLine, ...] = field(default_factory=tuple)
    subtotal: int = 0
    total: int = 0
    amount_paid: int = 0
    amount_due: int = 0
    period_start: datetime | None = None
    period_end: datetime | None = None

    @property
    def title(self) -> str:
        return f"Invoice {self.number}" if self.number else "Draft invoice"

    def money(self, amount: int) -> str:
        return format_amount(amount, self.currency)

    @property
    def balance(self) -> int:
        """What is still owed on it (nothing once paid, written off or voided)."""
        return self.amount_due - self.amount_paid if self.status == "open" else 0


@dataclass(frozen=True)
class CreditNoteDocument:
    """A credit note as its PDF shows it (ADR 0020): what it credits, on which invoice, and
    what was refunded to the card."""

    number: str
    invoice_number: str
    issued_at: datetime
    currency: str
    seller: Party
    buyer: Party
    reason: str
    amount: int
    refund_status: str

    @property
    def title(self) -> str:
        return f"Credit note {self.number}"

    @property
    def refunded(self) -> int:
        return self.amount if self.refund_status == "succeeded" else 0

    def money(self, amount: int) -> str:
        return format_amount(amount, self.currency)


def period_text(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    return f"{start:%Y-%m-%d} to {end:%Y-%m-%d}"
