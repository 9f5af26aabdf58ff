"""Credit notes (ADR 0020): an operator credits a paid invoice and the engine refunds it to the
card; a tenant reads its own."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Query, Response, status

from api.auth import AuthFirstRoute, OperatorPrincipal, ReadPrincipal, ServicesDep
from api.errors import error_responses
from api.schemas import CreditNoteCreate, CreditNoteList, CreditNoteOut
from services import credit_notes, documents

operator_router = APIRouter(
    route_class=AuthFirstRoute, prefix="/api/billing/operator", tags=["operator"]
)
router = APIRouter(
    route_class=AuthFirstRoute, prefix="/api/billing/credit-notes", tags=["invoices"]
)


@operator_router.post(
    "/tenants/{tenant_id}/invoices/{invoice_id}/credit-notes",
    status_code=status.HTTP_201_CREATED,
    response_model=CreditNoteOut,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def issue_credit_note(
    tenant_id: UUID,
    invoice_id: UUID,
    body: CreditNoteCreate,
    principal: OperatorPrincipal,
    services: ServicesDep,
) -> CreditNoteOut:
    """Credit `amount` of a paid invoice and refund it to the card (Stripe key
    `refund:{credit_note_id}`). 409 `credit_refused` when the invoice is not paid or the amount
    is above what is left to refund (paid minus every credit note, the dashboard's included).
    The answer's `refund_status` is `succeeded` once Stripe refunded, `pending` if it is still
    on its way; the same `idempotency_key` again returns the same credit note."""
    row = await credit_notes.issue(
        services, tenant_id, invoice_id, amount=body.amount, reason=body.reason,
        idempotency_key=body.idempotency_key, actor=principal.actor,
    )  # fmt: skip
    return CreditNoteOut.model_validate(row)


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
