"""A tenant's credit notes (ADR 0020): the list, one, and its PDF. Operators issue them
(`operator_credit_notes.py`)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Query, Response

from api.auth import AuthFirstRoute, ReadPrincipal, ServicesDep
from api.errors import error_responses
from api.schemas import CreditNoteList, CreditNoteOut
from services import credit_notes, documents

router = APIRouter(
    route_class=AuthFirstRoute, prefix="/api/billing/credit-notes", tags=["invoices"]
)


@router.get("", response_model=CreditNoteList, responses=error_responses(401, 403, 422))
async def list_credit_notes(
    principal: ReadPrincipal,
    services: ServicesDep,
    invoice_id: UUID | None = Query(None, description="Only this invoice's"),
) -> CreditNoteList:
    rows = await credit_notes.list_for_tenant(services, principal.require_tenant(), invoice_id)
    return CreditNoteList(data=[CreditNoteOut.model_validate(r) for r in rows])


@router.get(
    "/{credit_note_id}", response_model=CreditNoteOut, responses=error_responses(401, 403, 404)
)
async def get_credit_note(
    credit_note_id: UUID, principal: ReadPrincipal, services: ServicesDep
) -> CreditNoteOut:
    row = await credit_notes.get_for_tenant(services, principal.require_tenant(), credit_note_id)
    return CreditNoteOut.model_validate(row)


@router.get(
    "/{credit_note_id}/pdf",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "the credit note as a PDF"},
        **error_responses(401, 403, 404, 422),
    },
)
async def credit_note_pdf(
    credit_note_id: UUID, principal: ReadPrincipal, services: ServicesDep
) -> Response:
    """The engine's PDF of the credit note: its number, the invoice it credits, the amount and
    what was refunded to the card; the same bytes every time for the same credit note."""
    rendered = await documents.credit_note_pdf(services, principal.require_tenant(), credit_note_id)
    headers = {"Content-Disposition": f'inline; filename="{rendered.filename}"'}
    return Response(rendered.pdf, media_type="application/pdf", headers=headers)
