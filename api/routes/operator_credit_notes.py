"""Operators issue credit notes (ADR 0020): credit a paid invoice (refunded to the card, or to
the credit balance) or an open one (its amount due goes down)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status

from api.auth import AuthFirstRoute, OperatorPrincipal, ServicesDep
from api.errors import error_responses
from api.schemas import CreditNoteCreate, CreditNoteOut
from services import credit_notes

router = APIRouter(route_class=AuthFirstRoute, prefix="/api/billing/operator", tags=["operator"])


@router.post(
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
    `refund:{credit_note_id}`), or with `method: credit_balance` put it on the subscription's
    credit balance, which the next invoices use before the card (404 without a live
    subscription). On an open (or uncollectible) invoice the credit lowers its amount due
    through a Stripe credit note (key `credit-note:{credit_note_id}`); credited in full, the
    invoice is paid and its dunning stops. 409 `credit_refused` when the method does not fit
    the invoice's status, or the amount is above what is left (on a paid invoice: paid minus
    every credit note, the dashboard's included; on an open one: what is still due). The
    answer's `refund_status` is `succeeded` once Stripe acted, `pending` if it is still on its
    way, `failed` if Stripe refused; the same `idempotency_key` again returns the same credit
    note."""
    row = await credit_notes.issue(
        services, tenant_id, invoice_id, amount=body.amount, reason=body.reason,
        idempotency_key=body.idempotency_key, actor=principal.actor, method=body.method,
    )  # fmt: skip
    return CreditNoteOut.model_validate(row)
