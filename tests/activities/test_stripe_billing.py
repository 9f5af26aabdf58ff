"""Stripe billing activities over the fake: keys, declines as data, retryability, re-reads."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.stripe_billing import StripeBillingActivities
from adapters.stripe_fake import FakeStripeGateway
from workflows.subscription_io import (
    AttachPaymentMethodInput,
    CollectInvoiceInput,
    CreateStripeInvoiceInput,
    InvoiceLinePayload,
)


async def _invoice(
    fake: FakeStripeGateway, acts: StripeBillingActivities, card: str = "pm_card_visa"
) -> tuple[str, str]:
    customer = await fake.ensure_customer("t1", None, "T", idempotency_key="customer:t1")
    env = ActivityEnvironment()
    pm = await env.run(
        acts.attach_payment_method, AttachPaymentMethodInput("t1", customer.id, card)
    )
    assert (pm.brand, pm.last4) == ("visa", "4242") or card != "pm_card_visa"
    created = await env.run(
        acts.create_stripe_invoice,
        CreateStripeInvoiceInput(
            "inv-1", customer.id, "usd", [InvoiceLinePayload("base", "Standard", 4900)], "t1", "s1"
        ),
    )
    return customer.id, created.stripe_invoice_id


async def test_invoice_and_payment_use_business_keys() -> None:
    fake = FakeStripeGateway()
    acts = StripeBillingActivities(fake)
    _, stripe_id = await _invoice(fake, acts)
    env = ActivityEnvironment()
    result = await env.run(acts.collect_invoice, CollectInvoiceInput("inv-1", stripe_id, 1))
    assert result.outcome == "paid"
    assert fake.keys_for("create_invoice") == ["invoice:inv-1"]
    assert fake.keys_for("pay_invoice") == ["pay:inv-1:1"]
    # A later attempt re-reads first and never charges a paid invoice again.
    again = await env.run(acts.collect_invoice, CollectInvoiceInput("inv-1", stripe_id, 2))
    assert again.outcome == "already_paid"
    assert len(fake.charges) == 1
    assert fake.keys_for("pay_invoice") == ["pay:inv-1:1"]


async def test_a_decline_is_data_and_an_out_of_band_payment_is_not_charged() -> None:
    fake = FakeStripeGateway()
    acts = StripeBillingActivities(fake)
    _, stripe_id = await _invoice(fake, acts, "pm_card_chargeCustomerFail")
    env = ActivityEnvironment()
    declined = await env.run(acts.collect_invoice, CollectInvoiceInput("inv-1", stripe_id, 1))
    assert declined.outcome == "declined"
    assert declined.decline_code
    fake.mark_paid_out_of_band(stripe_id)
    retried = await env.run(acts.collect_invoice, CollectInvoiceInput("inv-1", stripe_id, 2))
    assert retried.outcome == "already_paid"
    assert fake.charges == []


async def test_transient_errors_are_retryable_and_invalid_requests_are_not() -> None:
    fake = FakeStripeGateway()
    acts = StripeBillingActivities(fake)
    _, stripe_id = await _invoice(fake, acts)
    env = ActivityEnvironment()
    fake.fail_next("pay_invoice")
    with pytest.raises(ApplicationError) as transient:
        await env.run(acts.collect_invoice, CollectInvoiceInput("inv-1", stripe_id, 1))
    assert transient.value.type == "stripe_transient"
    assert not transient.value.non_retryable
    await fake.void_invoice(stripe_id, idempotency_key="void:inv-1")  # written off elsewhere
    with pytest.raises(ApplicationError) as invalid:
        await env.run(acts.collect_invoice, CollectInvoiceInput("inv-1", stripe_id, 2))
    assert invalid.value.non_retryable
