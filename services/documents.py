"""The engine's own invoice documents (ADR 0015): the tenant's invoice, its lines and the two
parties, rendered as a PDF."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from adapters.db import billing_reads
from adapters.db import credit_notes as credit_notes_repo
from adapters.db import tenants as tenant_repo
from adapters.invoice_pdf import render_credit_note, render_invoice
from billing.documents import CreditNoteDocument, DocumentLine, InvoiceDocument, Party
from config import Settings
from services.context import Services
from services.errors import NotFound


@dataclass(frozen=True)
class RenderedInvoice:
    pdf: bytes
    filename: str
    hosted_invoice_url: str | None


def seller(settings: Settings) -> Party:
    address = tuple(part.strip() for part in settings.seller_address.split("|") if part.strip())
    return Party(settings.seller_name, address, settings.seller_tax_id, settings.seller_email)


def document(
    row: dict[str, Any], lines: list[dict[str, Any]], seller: Party, buyer: Party
) -> InvoiceDocument:
    return InvoiceDocument(
        number=row["number"],
        status=row["status"],
        issued_at=row["period_start"] or row["created_at"],
        currency=row["currency"],
        seller=seller,
        buyer=buyer,
        lines=tuple(
            DocumentLine(
                line["description"], line["amount"], line["period_start"], line["period_end"]
            )
            for line in lines
        ),
        subtotal=row["subtotal"],
        total=row["total"],
        amount_paid=row["amount_paid"],
        amount_due=row["amount_due"],
        period_start=row["period_start"],
        period_end=row["period_end"],
    )


async def invoice_pdf(services: Services, tenant_id: UUID, invoice_id: UUID) -> RenderedInvoice:
    """The tenant's invoice as a PDF (RLS-scoped read: another tenant's id is not found)."""
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        row = await billing_reads.get_invoice(conn, invoice_id)
        if row is None:
            raise NotFound("no such invoice")
        lines = await billing_reads.invoice_lines(conn, invoice_id)
        buyer = await _buyer(conn, tenant_id)
    doc = document(row, lines, seller(services.settings), buyer)
    return RenderedInvoice(
        render_invoice(doc), f"{row['number'] or invoice_id}.pdf", row["hosted_invoice_url"]
    )


async def credit_note_pdf(
    services: Services, tenant_id: UUID, credit_note_id: UUID
) -> RenderedInvoice:
    """The tenant's credit note as a PDF (ADR 0020; RLS-scoped like the invoice's)."""
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        note = await credit_notes_repo.get(conn, credit_note_id)
        if note is None:
            raise NotFound("no such credit note")
        invoice = await billing_reads.get_invoice(conn, note["invoice_id"])
        buyer = await _buyer(conn, tenant_id)
    assert invoice is not None  # a credit note's invoice is the same tenant's
    doc = CreditNoteDocument(
        number=note["number"],
        invoice_number=invoice["number"] or str(invoice["id"]),
        issued_at=note["created_at"],
        currency=note["currency"],
        seller=seller(services.settings),
        buyer=buyer,
        reason=note["reason"],
        amount=note["amount"],
        refund_status=note["refund_status"],
    )
    return RenderedInvoice(render_credit_note(doc), f"{note['number']}.pdf", None)


async def _buyer(conn: Any, tenant_id: UUID) -> Party:
    """The buyer block: the tenant's billing details, else its name and email."""
    tenant = await tenant_repo.get_tenant(conn, tenant_id)
    assert tenant is not None  # the document's own tenant
    details = tenant.billing_details
    return Party(
        details.get("name") or tenant.name,
        tuple(details.get("address") or ()),
        details.get("tax_id"),
        details.get("email") or tenant.email,
    )
