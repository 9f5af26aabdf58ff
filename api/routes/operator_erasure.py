"""Operator endpoints for a tenant's erasure (ADR 0018)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status

from api.auth import AuthFirstRoute, OperatorPrincipal, ServicesDep
from api.errors import error_responses
from api.schemas import ErasureOut, ErasureRequest
from services import erasure

router = APIRouter(route_class=AuthFirstRoute, prefix="/api/billing/operator", tags=["operator"])


@router.post(
    "/tenants/{tenant_id}/erase",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ErasureOut,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def erase_tenant(
    tenant_id: UUID, body: ErasureRequest, principal: OperatorPrincipal, services: ServicesDep
) -> ErasureOut:
    """Cancel the subscription now, delete the Stripe customer, revoke access, and replace the
    tenant's personal data with tombstones; invoices, amounts, numbers and the audit trail stay.
    Asking again changes nothing."""
    found = await erasure.request_erasure(services, tenant_id, principal.actor, body.reason)
    return ErasureOut.model_validate(found, from_attributes=True)


@router.get(
    "/tenants/{tenant_id}/erase",
    response_model=ErasureOut,
    responses=error_responses(401, 403, 404, 503),
)
async def erasure_progress(
    tenant_id: UUID, _: OperatorPrincipal, services: ServicesDep
) -> ErasureOut:
    return ErasureOut.model_validate(
        await erasure.erasure_status(services, tenant_id), from_attributes=True
    )
