"""Stripe customer activities (run on the rate-limited Stripe task queue)."""

from __future__ import annotations

from temporalio import activity

from activities.errors import domain_errors
from billing.payments import StripeGateway
from workflows.subscription_io import EnsureCustomerInput, EnsureCustomerResult


class CustomerActivities:
    def __init__(self, gateway: StripeGateway) -> None:
        self._gateway = gateway

    @activity.defn(name="ensure_stripe_customer")
    @domain_errors
    async def ensure_stripe_customer(self, input: EnsureCustomerInput) -> EnsureCustomerResult:
        if input.existing_customer_id:
            return EnsureCustomerResult(input.existing_customer_id)
        customer = await self._gateway.ensure_customer(
            tenant_id=input.tenant_id,
            email=input.email,
            name=input.name,
            # One customer per tenant, whatever retries or restarts happen.
            idempotency_key=f"customer:{input.tenant_id}",
        )
        return EnsureCustomerResult(customer.id)
