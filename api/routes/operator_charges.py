"""Operators add one-off charges to a tenant's subscription (ADR 0022)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status

from api.auth import AuthFirstRoute, OperatorPrincipal, ServicesDep
from api.commands import COMMAND_ERRORS
from api.schemas import ChargeCreate, ChargeOut
from services import charges

router = APIRouter(route_class=AuthFirstRoute, prefix="/api/billing/operator", tags=["operator"])


@router.post(
    "/tenants/{tenant_id}/charges",
    status_code=status.HTTP_201_CREATED,
    response_model=ChargeOut,
    responses=COMMAND_ERRORS,
)
async def add_charge(
    tenant_id: UUID, body: ChargeCreate, principal: OperatorPrincipal, services: ServicesDep
) -> ChargeOut:
    """A setup fee, services or a correction. `invoice: now` issues an invoice of its own and
    collects it (a declined card starts dunning, as for any invoice); `invoice: next` adds a
    line to the next invoice the subscription issues (the first after a trial, or the renewal).
    The same `idempotency_key` again adds nothing. 404 without a live subscription, 409 when
    the subscription takes no charges (paused or canceled)."""
    result = await charges.add(
        services, tenant_id, key=body.idempotency_key, description=body.description,
        amount=body.amount, invoice_now=body.invoice == "now", actor=principal.actor,
        reason=body.reason,
    )  # fmt: skip
    return ChargeOut.model_validate(result, from_attributes=True)
