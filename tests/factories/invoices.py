"""Unpaid invoices, as a renewal leaves them when its own collection was declined: a
subscription row, an open engine invoice (attempt 1 recorded), and the matching Stripe customer
(with a declining default card) and open invoice in the fake."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import select

from adapters.db.tables import (
    dunning_attempts,
    invoices,
    notification_endpoints,
    plans,
    subscriptions,
)
from adapters.stripe_fake import FakeStripeGateway
from billing.payments import InvoiceLine
from tests.factories.tenants import make_tenant
from tests.harness import Databases


@dataclass(frozen=True)
class UnpaidInvoice:
    tenant_id: UUID
    subscription_id: UUID
    invoice_id: UUID
    stripe_customer_id: str
    stripe_invoice_id: str
    hosted_invoice_url: str | None
    amount_due: int
    currency: str
    # The notification endpoint dunning's notifications are queued for.
    endpoint_id: UUID


async def make_unpaid_invoice(
    dbs: Databases,
    stripe: FakeStripeGateway,
    *,
    amount_due: int = 2900,
    currency: str = "usd",
    plan_code: str = "standard",
    card_on_file: bool = True,
) -> UnpaidInvoice:
    """`card_on_file=False`: the customer has no default card (removed, or never added), so
    Stripe refuses to collect at all."""
    tenant = await make_tenant(dbs)
    subscription_id = uuid.uuid4()
    invoice_id = uuid.uuid4()

    customer = await stripe.ensure_customer(
        str(tenant.id), None, tenant.name, idempotency_key=f"customer:{tenant.id}"
    )
    if card_on_file:
        card = stripe.register_card(
            last4="0341", behaviour="declines", decline_code="card_declined"
        )
        await stripe.attach_payment_method(customer.id, card, idempotency_key=f"pm:{card}")
    stripe_invoice = await stripe.create_invoice(
        customer.id,
        [InvoiceLine("Standard plan, monthly", amount_due, currency)],
        {"invoice_id": str(invoice_id), "tenant_id": str(tenant.id)},
        idempotency_key=f"invoice:{invoice_id}",
    )
    # The renewal's own collection: attempt 1, declined (or refused: no card).
    decline_code = "payment_method_missing"
    if card_on_file:
        first = await stripe.pay_invoice(stripe_invoice.id, idempotency_key=f"pay:{invoice_id}:1")
        assert not first.succeeded
        decline_code = first.decline_code or "card_declined"

    async with dbs.worker.transaction() as conn:
        plan_id = (
            await conn.execute(
                select(plans.c.id)
                .where(plans.c.code == plan_code)
                .order_by(plans.c.version.desc())
                .limit(1)
            )
        ).scalar_one()
        await conn.execute(
            subscriptions.insert().values(
                id=subscription_id,
                tenant_id=tenant.id,
                plan_id=plan_id,
                plan_code=plan_code,
                interval="month",
                currency=currency,
                status="past_due",
                workflow_id=f"subscription:{subscription_id}",
            )
        )
        await conn.execute(
            invoices.insert().values(
                id=invoice_id,
                tenant_id=tenant.id,
                subscription_id=subscription_id,
                status="open",
                billing_reason="subscription_cycle",
                billing_key=f"sub:{subscription_id}:cycle:1",
                currency=currency,
                subtotal=amount_due,
                total=amount_due,
                amount_due=amount_due,
                stripe_invoice_id=stripe_invoice.id,
                hosted_invoice_url=stripe_invoice.hosted_invoice_url,
                attempt_count=1,
                version=1,
            )
        )
        await conn.execute(
            dunning_attempts.insert().values(
                tenant_id=tenant.id,
                invoice_id=invoice_id,
                attempt=1,
                idempotency_key=f"pay:{invoice_id}:1",
                attempted_at=datetime.now(UTC),
                outcome="declined" if card_on_file else "error",
                decline_code=decline_code,
            )
        )
        endpoint_id = (
            await conn.execute(
                notification_endpoints.insert()
                .values(
                    tenant_id=tenant.id,
                    url="https://tenant.invalid/hooks",
                    secret="whsec_test",  # noqa: S106 - a test fixture, not a secret
                )
                .returning(notification_endpoints.c.id)
            )
        ).scalar_one()

    return UnpaidInvoice(
        tenant_id=tenant.id,
        subscription_id=subscription_id,
        invoice_id=invoice_id,
        stripe_customer_id=customer.id,
        stripe_invoice_id=stripe_invoice.id,
        hosted_invoice_url=stripe_invoice.hosted_invoice_url,
        amount_due=amount_due,
        currency=currency,
        endpoint_id=endpoint_id,
    )
