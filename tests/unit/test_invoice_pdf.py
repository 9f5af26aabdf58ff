"""The engine's invoice PDF (ADR 0015): the number, the parties, the lines and the totals are
in the text a PDF reader extracts, and the same invoice renders to the same bytes."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from pypdf import PdfReader

from adapters.invoice_pdf import render_invoice
from billing.documents import DocumentLine, InvoiceDocument, Party

START = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)
END = datetime(2026, 4, 10, 9, 30, tzinfo=UTC)


def _doc(**changes: object) -> InvoiceDocument:
    base: dict[str, object] = {
        "number": "INV-2026-000042",
        "status": "open",
        "issued_at": START,
        "currency": "usd",
        "seller": Party("Seller Ltd", ("1 Main St", "Springfield"), "GB123", "billing@seller.test"),
        "buyer": Party("Acme Corp", email="ap@acme.test"),
        "lines": (
            DocumentLine("Standard plan", 4900, START, END),
            DocumentLine("Overage: api_calls", 1250, START, END),
            DocumentLine("Credit from downgrade", -700),
        ),
        "subtotal": 5450,
        "total": 5450,
        "amount_paid": 0,
        "amount_due": 5450,
        "period_start": START,
        "period_end": END,
    }
    base.update(changes)
    return InvoiceDocument(**base)  # type: ignore[arg-type]


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def test_the_pdf_shows_number_parties_lines_and_totals() -> None:
    pdf = render_invoice(_doc())
    assert pdf.startswith(b"%PDF")
    text = _text(pdf)
    for expected in (
        "Invoice INV-2026-000042",
        "Seller Ltd",
        "1 Main St",
        "Tax ID: GB123",
        "Acme Corp",
        "ap@acme.test",
        "Standard plan",
        "$49.00",
        "Overage: api_calls",
        "$12.50",
        "Credit from downgrade",
        "-$7.00",
        "2026-03-10 to 2026-04-10",
        "Total",
        "$54.50",
        "Amount due",
    ):
        assert expected in text, (expected, text)


def test_a_paid_invoice_owes_nothing() -> None:
    text = _text(render_invoice(_doc(status="paid", amount_paid=5450)))
    assert "Amount paid $54.50" in text.replace("\n", " ")
    assert "Amount due $0.00" in text.replace("\n", " ")


def test_the_same_invoice_renders_the_same_bytes() -> None:
    assert render_invoice(_doc()) == render_invoice(_doc())
    assert render_invoice(_doc()) != render_invoice(_doc(number="INV-2026-000043"))


def test_a_draft_and_a_name_outside_latin1_still_render() -> None:
    text = _text(render_invoice(_doc(number=None, buyer=Party("株式会社 Example"))))
    assert "Draft invoice" in text
    assert "Example" in text
