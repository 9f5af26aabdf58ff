"""`GET /api/billing/account`: the calling tenant's own access status, why it is suspended, its
Stripe customer and default card. A tenant can see this without first being refused a 402."""

from __future__ import annotations

from fastapi import APIRouter

from adapters.db import payment_methods as payment_methods_repo
from adapters.db import tenants as tenant_repo
from adapters.db.audit import record_audit
from api.auth import AuthFirstRoute, ManagePrincipal, ReadPrincipal, ServicesDep
from api.errors import NotFound, error_responses
from api.schemas import AccountOut, BillingDetails, PaymentMethodOut

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


@router.get(
    "/billing-details", response_model=BillingDetails, responses=error_responses(401, 403, 404)
)
async def get_billing_details(principal: ReadPrincipal, services: ServicesDep) -> BillingDetails:
    """What the buyer block of the tenant's invoice PDFs shows (empty fields: the tenant's
    name and email)."""
    tenant_id = principal.require_tenant()
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        tenant = await tenant_repo.get_tenant(conn, tenant_id)
    if tenant is None:
        raise NotFound("tenant not found")
    return BillingDetails.model_validate(tenant.billing_details)


@router.put(
    "/billing-details", response_model=BillingDetails, responses=error_responses(401, 403, 404, 422)
)
async def set_billing_details(
    body: BillingDetails, principal: ManagePrincipal, services: ServicesDep
) -> BillingDetails:
    """Replace the billing details (audited with before and after); invoice PDFs rendered from
    now on show them."""
    tenant_id = principal.require_tenant()
    after = body.model_dump(exclude_none=True)
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        before = await tenant_repo.set_billing_details(conn, tenant_id, after)
        if before is None:
            raise NotFound("tenant not found")
        await record_audit(
            conn,
            actor=principal.actor,
            action="tenant.billing_details_set",
            subject_type="tenant",
            subject_id=str(tenant_id),
            tenant_id=tenant_id,
            before=before,
            after=after,
        )
    return BillingDetails.model_validate(after)
