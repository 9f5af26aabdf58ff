"""`/api/billing/payment-methods`: attach a card (Stripe payment method id from Stripe.js) as the
default through the subscription workflow, and list stored cards (brand, last4, expiry only)."""

from __future__ import annotations

from fastapi import APIRouter, status

from adapters.db import billing_reads
from api.auth import ManagePrincipal, ReadPrincipal, ServicesDep
from api.commands import apply_before, run_update
from api.routes.subscription import COMMAND_ERRORS, live_subscription
from api.schemas import PaymentMethodIn, PaymentMethodOut
from workflows.io import PaymentMethodResult, SetPaymentMethodRequest

router = APIRouter(prefix="/api/billing/payment-methods", tags=["payment methods"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentMethodOut,
    responses=COMMAND_ERRORS,
)
async def add_payment_method(
    body: PaymentMethodIn, principal: ManagePrincipal, services: ServicesDep
) -> PaymentMethodOut:
    """Attach and make default; any open invoice is collected again right away."""
    live = await live_subscription(services, principal)
    card = await run_update(
        services,
        live.workflow_id,
        "set_payment_method",
        SetPaymentMethodRequest(
            body.payment_method_id, principal.actor, apply_before=apply_before(services)
        ),
        PaymentMethodResult,
    )
    return PaymentMethodOut(
        stripe_payment_method_id=card.payment_method_id,
        brand=card.brand,
        last4=card.last4,
        exp_month=card.exp_month,
        exp_year=card.exp_year,
        is_default=True,
    )


@router.get("", response_model=list[PaymentMethodOut], responses=COMMAND_ERRORS)
async def list_payment_methods(
    principal: ReadPrincipal, services: ServicesDep
) -> list[PaymentMethodOut]:
    async with services.tenant_db.tenant_transaction(principal.require_tenant()) as conn:
        rows = await billing_reads.list_payment_methods(conn)
    return [PaymentMethodOut.model_validate(r) for r in rows]
