"""`/api/billing/payment-methods`: attach a card (Stripe payment method id from Stripe.js) as the
default, and list stored cards (brand, last4, expiry only).

With a live subscription the card goes through the subscription workflow (it retries what is
owed at once). Before any subscription, the card is attached here: the tenant's Stripe customer
is created (key `customer:{tenant_id}`) and recorded, and the subscription started later reuses
both. Either way a card that belongs to another Stripe customer is refused with the same answer
as an unknown id, so nothing about another tenant is revealed."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status

from adapters.db import billing_reads
from adapters.db import payment_methods as payment_methods_repo
from adapters.db import subscriptions as subscription_repo
from adapters.db import tenants as tenant_repo
from adapters.db.audit import record_audit
from api.auth import AuthFirstRoute, ManagePrincipal, Principal, ReadPrincipal, ServicesDep
from api.commands import COMMAND_ERRORS
from api.errors import NotFound
from api.schemas import PaymentMethodIn, PaymentMethodOut
from billing.payments import (
    CardDetails,
    PaymentMethodUnavailable,
    StripeNotFound,
    unusable_payment_method_message,
)
from services.commands import PaymentMethodRefused, apply_before, run_update
from services.context import Services
from workflows.subscription import SubscriptionWorkflow
from workflows.subscription_io import SetPaymentMethodRequest

router = APIRouter(
    route_class=AuthFirstRoute, prefix="/api/billing/payment-methods", tags=["payment methods"]
)


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
    tenant_id = principal.require_tenant()
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        live = await subscription_repo.get_live_subscription(conn, tenant_id)
    if live is None:
        card = await _attach_without_subscription(services, principal, body.payment_method_id)
    else:
        try:
            result = await run_update(
                services,
                live.workflow_id,
                SubscriptionWorkflow.set_payment_method,
                SetPaymentMethodRequest(
                    body.payment_method_id, principal.actor, apply_before=apply_before(services)
                ),
            )
        except PaymentMethodRefused as error:  # Stripe's wording differs by case: one message
            message = unusable_payment_method_message(body.payment_method_id)
            raise PaymentMethodRefused(message) from error
        card = CardDetails(
            result.payment_method_id, result.brand, result.last4, result.exp_month, result.exp_year
        )
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        row = await payment_methods_repo.get_card(conn, card.payment_method_id)
    if row is None:  # recorded by the workflow's next activity, which has not committed yet
        return PaymentMethodOut(
            stripe_payment_method_id=card.payment_method_id,
            brand=card.brand,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            is_default=True,
        )
    return PaymentMethodOut.model_validate(row)


async def _attach_without_subscription(
    services: Services, principal: Principal, payment_method_id: str
) -> CardDetails:
    tenant_id = principal.require_tenant()
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        tenant = await tenant_repo.get_tenant(conn, tenant_id)
    if tenant is None:  # the key outlived its tenant
        raise NotFound("tenant not found")
    customer_id = tenant.stripe_customer_id or await _ensure_customer(services, tenant_id, tenant)
    try:
        card = await services.stripe.attach_payment_method(
            customer_id,
            payment_method_id,
            # The key the subscription workflow's attach uses for the same card.
            idempotency_key=f"pm:{customer_id}:{payment_method_id}",
        )
    except (StripeNotFound, PaymentMethodUnavailable) as error:
        raise PaymentMethodRefused(unusable_payment_method_message(payment_method_id)) from error
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        before = payment_methods_repo.card_snapshot(await payment_methods_repo.default_card(conn))
        await payment_methods_repo.record_default_card(conn, tenant_id, card)
        after = payment_methods_repo.card_snapshot(await payment_methods_repo.default_card(conn))
        await record_audit(
            conn,
            actor=principal.actor,
            action="payment_method.added",
            subject_type="tenant",
            subject_id=str(tenant_id),
            tenant_id=tenant_id,
            before={"default_card": before},
            after={"default_card": after},
        )
    return card


async def _ensure_customer(
    services: Services, tenant_id: UUID, tenant: tenant_repo.TenantRow
) -> str:
    customer = await services.stripe.ensure_customer(
        tenant_id=str(tenant_id),
        email=tenant.email,
        name=tenant.name,
        idempotency_key=f"customer:{tenant_id}",  # the subscription workflow's key
    )
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        # Only if still unset: a concurrent request may have recorded the same customer.
        await tenant_repo.set_stripe_customer_if_unset(conn, tenant_id, customer.id)
        current = await tenant_repo.get_tenant(conn, tenant_id)
    if current is None or current.stripe_customer_id is None:
        raise NotFound("tenant not found")
    return current.stripe_customer_id


@router.get("", response_model=list[PaymentMethodOut], responses=COMMAND_ERRORS)
async def list_payment_methods(
    principal: ReadPrincipal, services: ServicesDep
) -> list[PaymentMethodOut]:
    async with services.tenant_db.tenant_transaction(principal.require_tenant()) as conn:
        rows = await billing_reads.list_payment_methods(conn)
    return [PaymentMethodOut.model_validate(r) for r in rows]
