"""The engine's own invoice and credit note PDFs (ADR 0015, 0020), rendered with fpdf2 from
`billing.documents`.

Deterministic: the same document gives the same bytes (the creation date is the invoice's
issue instant, and fpdf2 writes no random id), so documents can be archived and compared. The
PDF's core fonts cover Latin-1; other characters print as `?` (a Unicode font is the next step
for tenants whose names need one).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from fpdf import FPDF

from billing.documents import (
    CreditNoteDocument,
    DocumentLine,
    InvoiceDocument,
    Party,
    period_text,
)

__all__ = ["render_credit_note", "render_invoice"]

_WIDTH = 180  # printable width in mm (A4, 15 mm margins)


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def _party(pdf: FPDF, heading: str, party: Party, x: float, y: float) -> None:
    pdf.set_xy(x, y)
    pdf.set_font("helvetica", "B", 9)
    pdf.cell(85, 5, _latin1(heading), new_x="LEFT", new_y="NEXT")
    pdf.set_font("helvetica", "", 10)
    lines = [party.name, *party.address]
    if party.tax_id:
        lines.append(f"Tax ID: {party.tax_id}")
    if party.email:
        lines.append(party.email)
    for line in lines:
        pdf.cell(85, 5, _latin1(line), new_x="LEFT", new_y="NEXT")


def render_invoice(doc: InvoiceDocument) -> bytes:
    totals = [
        ("Subtotal", doc.subtotal),
        ("Total", doc.total),
        ("Amount paid", doc.amount_paid),
        ("Amount due", doc.balance),
    ]
    return _render(
        doc.title,
        doc.issued_at,
        f"status: {doc.status}",
        doc.seller,
        doc.buyer,
        doc.lines,
        totals,
        doc.money,
        period_text(doc.period_start, doc.period_end),
    )


def render_credit_note(doc: CreditNoteDocument) -> bytes:
    totals = [("Total credited", doc.amount), ("Refunded to card", doc.refunded)]
    return _render(
        doc.title,
        doc.issued_at,
        f"credits invoice {doc.invoice_number}  -  refund: {doc.refund_status}",
        doc.seller,
        doc.buyer,
        (DocumentLine(doc.reason, doc.amount),),
        totals,
        doc.money,
        "",
    )


def _render(
    title: str,
    issued_at: datetime,
    subtitle: str,
    seller: Party,
    buyer: Party,
    lines: Sequence[DocumentLine],
    totals: Sequence[tuple[str, int]],
    money: Callable[[int], str],
    service: str,
) -> bytes:
    """The document: a title, the two parties, the lines, the totals (the first bold total and
    the last are emphasised). Metadata dates are the document's own, so the bytes depend only
    on what the document says."""
    pdf = FPDF(format="A4")
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_creation_date(issued_at)
    pdf.set_title(_latin1(title))
    pdf.set_author(_latin1(seller.name))
    pdf.set_creator("billing-engine")
    pdf.add_page()

    pdf.set_font("helvetica", "B", 18)
    pdf.cell(_WIDTH, 10, _latin1(title), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 10)
    pdf.cell(_WIDTH, 6, _latin1(f"Issued {issued_at:%Y-%m-%d}  -  {subtitle}"),
             new_x="LMARGIN", new_y="NEXT")  # fmt: skip
    if service:
        pdf.cell(_WIDTH, 6, f"Service period: {service}", new_x="LMARGIN", new_y="NEXT")
    top = pdf.get_y() + 4
    _party(pdf, "From", seller, 15, top)
    below_seller = pdf.get_y()
    _party(pdf, "Bill to", buyer, 110, top)
    pdf.set_xy(15, max(below_seller, pdf.get_y()) + 8)

    pdf.set_font("helvetica", "B", 10)
    pdf.cell(100, 7, "Description", border="B")
    pdf.cell(50, 7, "Period", border="B")
    pdf.cell(30, 7, "Amount", border="B", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", "", 10)
    for line in lines:
        pdf.cell(100, 7, _latin1(line.description)[:60])
        pdf.cell(50, 7, period_text(line.period_start, line.period_end))
        pdf.cell(30, 7, _latin1(money(line.amount)), align="R",
                 new_x="LMARGIN", new_y="NEXT")  # fmt: skip

    pdf.ln(4)
    emphasised = {totals[1][0] if len(totals) > 1 else totals[0][0], totals[-1][0]}
    for label, amount in totals:
        pdf.set_font("helvetica", "B" if label in emphasised else "", 10)
        pdf.cell(150, 7, label, align="R")
        pdf.cell(30, 7, _latin1(money(amount)), align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
