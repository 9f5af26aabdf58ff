"""`GET /api/billing/account`: the calling tenant's own access status, why it is suspended, its
Stripe customer and default card. A tenant can see this without first being refused a 402."""

from __future__ import annotations

from fastapi import APIRouter

from adapters.db import payment_methods as payment_methods_repo
from adapters.db import tenants as tenant_repo
from api.auth import AuthFirstRoute, ReadPrincipal, ServicesDep
from api.errors import NotFound, error_responses
from api.schemas import AccountOut, PaymentMethodOut

router = APIRouter(route_class=AuthFirstRoute, prefix="/api/billing/account", tags=["account"])


@router.get("", response_model=AccountOut, responses=error_responses(401, 403, 404, 503))
async def get_account(principal: ReadPrincipal, services: ServicesDep) -> AccountOut:
    tenant_id = principal.require_tenant()
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        tenant = await tenant_repo.get_tenant(conn, tenant_id)
        card = await payment_methods_repo.default_card(conn)
    if tenant is None:  # the key outlived its tenant
        raise NotFound("tenant not found")
    return AccountOut(
        tenant_id=tenant.id,
        name=tenant.name,
        email=tenant.email,
        access_status=tenant.access_status,
        suspension_reason=tenant.suspension_reason,
        stripe_customer_id=tenant.stripe_customer_id,
        default_payment_method=PaymentMethodOut.model_validate(card) if card else None,
    )
