"""Behaviour every StripeGateway must have, run against the in-memory fake and against the SDK
adapter talking HTTP to a real localstripe process. A difference between the two fails here,
so workflow tests built on the fake keep meaning something."""

from __future__ import annotations

import pytest

from billing.payments import (
    InvoiceLine,
    PaymentMethodUnavailable,
    StripeCardRejected,
    StripeInvalidRequest,
    StripeNotFound,
    StripePaymentMethodMissing,
)

from .conftest import GatewayUnderTest

LINES = [
    InvoiceLine("Standard plan, March", 4900, "usd", {"kind": "base"}),
    InvoiceLine("LLM tokens over quota", 1234, "usd", {"kind": "overage"}),
]


async def _customer_with_card(g: GatewayUnderTest, tenant_id: str, card: str) -> str:
    customer = await g.gateway.ensure_customer(
        tenant_id, f"{tenant_id}@example.com", tenant_id, f"customer:{tenant_id}"
    )
    await g.gateway.attach_payment_method(customer.id, card, f"payment-method:{tenant_id}:1")
    return customer.id


async def test_ensure_customer_carries_tenant_id(gateway: GatewayUnderTest, tenant_id: str) -> None:
    customer = await gateway.gateway.ensure_customer(
        tenant_id, "ops@acme.test", "Acme", f"customer:{tenant_id}"
    )

    assert customer.id.startswith("cus_")
    assert customer.email == "ops@acme.test"
    assert customer.metadata == {"tenant_id": tenant_id}


async def test_attach_visa_returns_card_details_never_the_number(
    gateway: GatewayUnderTest, tenant_id: str
) -> None:
    customer = await gateway.gateway.ensure_customer(
        tenant_id, "ops@acme.test", "Acme", f"customer:{tenant_id}"
    )

    card = await gateway.gateway.attach_payment_method(
        customer.id, "pm_card_visa", f"payment-method:{tenant_id}:1"
    )

    assert (card.brand, card.last4) == ("visa", "4242")
    assert 1 <= card.exp_month <= 12
    assert card.exp_year >= 2025
    # The alias becomes a concrete payment method, and that is the id to store.
    assert card.payment_method_id.startswith("pm_")
    assert card.payment_method_id != "pm_card_visa"
    assert await gateway.gateway.retrieve_payment_method(card.payment_method_id) == card


async def test_invoice_with_two_lines_is_paid_in_full(
    gateway: GatewayUnderTest, tenant_id: str
) -> None:
    customer_id = await _customer_with_card(gateway, tenant_id, "pm_card_visa")

    invoice = await gateway.gateway.create_invoice(
        customer_id, LINES, {"invoice_id": f"inv-{tenant_id}"}, f"invoice:inv-{tenant_id}"
    )
    assert invoice.status == "open"  # finalized, but not collected: the engine decides when
    assert invoice.amount_due == 4900 + 1234
    assert invoice.amount_paid == 0
    assert invoice.currency == "usd"
    assert invoice.customer_id == customer_id
    assert invoice.metadata == {"invoice_id": f"inv-{tenant_id}"}

    outcome = await gateway.gateway.pay_invoice(invoice.id, f"pay:inv-{tenant_id}:1")

    assert outcome.succeeded
    assert not outcome.requires_action
    assert outcome.decline_code is None
    assert outcome.invoice.status == "paid"
    assert outcome.invoice.amount_paid == 4900 + 1234
    assert await gateway.gateway.retrieve_invoice(invoice.id) == outcome.invoice
    assert await gateway.succeeded_charges(customer_id) == 1


async def test_paying_a_paid_invoice_again_does_not_charge_twice(
    gateway: GatewayUnderTest, tenant_id: str
) -> None:
    customer_id = await _customer_with_card(gateway, tenant_id, "pm_card_visa")
    invoice = await gateway.gateway.create_invoice(customer_id, LINES, {}, f"invoice:{tenant_id}")
    await gateway.gateway.pay_invoice(invoice.id, f"pay:{tenant_id}:1")

    # A later attempt (new key), e.g. a dunning step racing the webhook that said "paid".
    again = await gateway.gateway.pay_invoice(invoice.id, f"pay:{tenant_id}:2")

    assert again.succeeded
    assert again.invoice.status == "paid"
    assert await gateway.succeeded_charges(customer_id) == 1


async def test_card_decline_is_data_not_an_exception(
    gateway: GatewayUnderTest, tenant_id: str
) -> None:
    customer_id = await _customer_with_card(gateway, tenant_id, "pm_card_chargeCustomerFail")
    invoice = await gateway.gateway.create_invoice(customer_id, LINES, {}, f"invoice:{tenant_id}")

    outcome = await gateway.gateway.pay_invoice(invoice.id, f"pay:{tenant_id}:1")

    assert not outcome.succeeded
    assert not outcome.requires_action
    assert outcome.decline_code == "card_declined"
    assert outcome.failure_message
    assert outcome.invoice.status == "open"
    assert outcome.invoice.amount_paid == 0
    assert await gateway.succeeded_charges(customer_id) == 0


async def test_three_d_secure_card_requires_action(
    gateway: GatewayUnderTest, tenant_id: str
) -> None:
    customer_id = await _customer_with_card(gateway, tenant_id, "pm_card_authenticationRequired")
    invoice = await gateway.gateway.create_invoice(customer_id, LINES, {}, f"invoice:{tenant_id}")

    outcome = await gateway.gateway.pay_invoice(invoice.id, f"pay:{tenant_id}:1")

    assert not outcome.succeeded
    assert outcome.requires_action
    assert outcome.decline_code == "authentication_required"
    assert outcome.invoice.status == "open"


async def test_retrieve_then_void_and_void_again(gateway: GatewayUnderTest, tenant_id: str) -> None:
    customer_id = await _customer_with_card(gateway, tenant_id, "pm_card_visa")
    invoice = await gateway.gateway.create_invoice(customer_id, LINES, {}, f"invoice:{tenant_id}")

    assert await gateway.gateway.retrieve_invoice(invoice.id) == invoice
    voided = await gateway.gateway.void_invoice(invoice.id, f"void:{tenant_id}")
    assert voided.status == "void"
    # Asking for the state it is already in is not an error (a retried activity, a replay).
    assert (await gateway.gateway.void_invoice(invoice.id, f"void:{tenant_id}:again")) == voided
    assert (await gateway.gateway.retrieve_invoice(invoice.id)).status == "void"

    with pytest.raises(StripeInvalidRequest):
        await gateway.gateway.pay_invoice(invoice.id, f"pay:{tenant_id}:1")


async def test_declined_invoice_marked_uncollectible_then_voided(
    gateway: GatewayUnderTest, tenant_id: str
) -> None:
    customer_id = await _customer_with_card(gateway, tenant_id, "pm_card_chargeCustomerFail")
    invoice = await gateway.gateway.create_invoice(customer_id, LINES, {}, f"invoice:{tenant_id}")
    await gateway.gateway.pay_invoice(invoice.id, f"pay:{tenant_id}:1")

    marked = await gateway.gateway.mark_uncollectible(invoice.id, f"uncollectible:{tenant_id}")
    assert marked.status == "uncollectible"
    again = await gateway.gateway.mark_uncollectible(invoice.id, f"uncollectible:{tenant_id}:2")
    assert again.status == "uncollectible"

    assert (await gateway.gateway.void_invoice(invoice.id, f"void:{tenant_id}")).status == "void"


async def test_cannot_void_a_paid_invoice(gateway: GatewayUnderTest, tenant_id: str) -> None:
    customer_id = await _customer_with_card(gateway, tenant_id, "pm_card_visa")
    invoice = await gateway.gateway.create_invoice(customer_id, LINES, {}, f"invoice:{tenant_id}")
    await gateway.gateway.pay_invoice(invoice.id, f"pay:{tenant_id}:1")

    with pytest.raises(StripeInvalidRequest):
        await gateway.gateway.void_invoice(invoice.id, f"void:{tenant_id}")


async def test_unknown_invoice_is_not_found(gateway: GatewayUnderTest) -> None:
    with pytest.raises(StripeNotFound):
        await gateway.gateway.retrieve_invoice("in_doesnotexist0000")
    with pytest.raises(StripeNotFound):
        await gateway.gateway.pay_invoice("in_doesnotexist0000", "pay:in_doesnotexist0000:1")


async def test_paying_without_a_card_says_so(gateway: GatewayUnderTest, tenant_id: str) -> None:
    customer = await gateway.gateway.ensure_customer(
        tenant_id, "ops@acme.test", "Acme", f"customer:{tenant_id}"
    )
    invoice = await gateway.gateway.create_invoice(customer.id, LINES, {}, f"invoice:{tenant_id}")

    with pytest.raises(StripePaymentMethodMissing):
        await gateway.gateway.pay_invoice(invoice.id, f"pay:{tenant_id}:1")


async def test_card_refused_on_attach_raises(gateway: GatewayUnderTest, tenant_id: str) -> None:
    customer = await gateway.gateway.ensure_customer(
        tenant_id, "ops@acme.test", "Acme", f"customer:{tenant_id}"
    )

    with pytest.raises(StripeCardRejected) as caught:
        await gateway.gateway.attach_payment_method(
            customer.id, "pm_card_visa_chargeDeclined", f"payment-method:{tenant_id}:1"
        )
    assert caught.value.stripe_code == "card_declined"


async def test_invoice_only_sweeps_the_customers_own_items(
    gateway: GatewayUnderTest, tenant_id: str
) -> None:
    first = await _customer_with_card(gateway, f"{tenant_id}-a", "pm_card_visa")
    second = await _customer_with_card(gateway, f"{tenant_id}-b", "pm_card_visa")

    a = await gateway.gateway.create_invoice(first, LINES[:1], {}, f"invoice:{tenant_id}-a")
    b = await gateway.gateway.create_invoice(second, LINES[1:], {}, f"invoice:{tenant_id}-b")

    assert (a.amount_due, b.amount_due) == (4900, 1234)


async def test_health_check_passes_when_stripe_answers(gateway: GatewayUnderTest) -> None:
    await gateway.gateway.health_check()


async def test_a_customer_may_have_no_email(gateway: GatewayUnderTest, tenant_id: str) -> None:
    customer = await gateway.gateway.ensure_customer(
        tenant_id, None, "Acme", f"customer:{tenant_id}"
    )

    assert customer.email is None
    assert customer.metadata == {"tenant_id": tenant_id}


async def test_a_card_attached_to_one_customer_cannot_be_attached_to_another(
    gateway: GatewayUnderTest, tenant_id: str
) -> None:
    """Stripe refuses it; localstripe does not, so the SDK adapter checks first. Re-attaching to
    the same customer (an activity retry, a card added before subscribing) still works."""
    g = gateway.gateway
    first = await g.ensure_customer(tenant_id, None, "A", f"customer:{tenant_id}")
    second = await g.ensure_customer(f"{tenant_id}-b", None, "B", f"customer:{tenant_id}-b")
    card = await g.attach_payment_method(first.id, "pm_card_visa", f"pm:{tenant_id}:a")

    with pytest.raises(PaymentMethodUnavailable) as refused:
        await g.attach_payment_method(second.id, card.payment_method_id, f"pm:{tenant_id}:b")

    assert card.payment_method_id in str(refused.value)
    again = await g.attach_payment_method(first.id, card.payment_method_id, f"pm:{tenant_id}:a2")
    assert again.payment_method_id == card.payment_method_id


async def test_a_paid_invoice_is_refunded_in_part_once_per_key(
    gateway: GatewayUnderTest, tenant_id: str
) -> None:
    """ADR 0020: a refund of part of what an invoice collected, idempotent by key; an open
    invoice has nothing to refund."""
    g = gateway.gateway
    customer_id = await _customer_with_card(gateway, tenant_id, "pm_card_visa")
    invoice = await g.create_invoice(customer_id, LINES, {}, f"invoice:refund-{tenant_id}")
    with pytest.raises(StripeInvalidRequest):
        await g.refund_invoice_payment(invoice.id, 100, {}, f"refund:{tenant_id}:open")
    await g.pay_invoice(invoice.id, f"pay:refund-{tenant_id}:1")

    meta = {"credit_note_id": f"cn-{tenant_id}"}
    refund = await g.refund_invoice_payment(invoice.id, 3000, meta, f"refund:{tenant_id}:1")
    again = await g.refund_invoice_payment(invoice.id, 3000, meta, f"refund:{tenant_id}:1")

    assert (refund.amount, refund.status) == (3000, "succeeded")
    assert refund.id.startswith("re_")
    assert refund.metadata["credit_note_id"] == f"cn-{tenant_id}"
    assert again.id == refund.id  # the same key: the same refund


async def test_the_invoice_a_payment_paid_is_found_by_its_payment_intent(
    gateway: GatewayUnderTest, tenant_id: str
) -> None:
    """ADR 0021: a dispute names only the payment; the invoice is found from it."""
    g = gateway.gateway
    customer_id = await _customer_with_card(gateway, tenant_id, "pm_card_visa")
    invoice = await g.create_invoice(customer_id, LINES, {}, f"invoice:dispute-{tenant_id}")
    await g.pay_invoice(invoice.id, f"pay:dispute-{tenant_id}:1")
    intent = await gateway.payment_intent_of(invoice.id)

    assert await g.find_invoice_for_payment(intent, None) == invoice.id
    assert await g.find_invoice_for_payment("pi_unknown_to_stripe", None) is None
    assert await g.find_invoice_for_payment(None, None) is None


async def test_a_credit_note_lowers_an_open_invoice_once_per_key(
    gateway: GatewayUnderTest, tenant_id: str
) -> None:
    """ADR 0020: a credit note on an open invoice lowers its amount due, once per key; the next
    payment collects what is left; more than is due, or a paid invoice, is refused."""
    g = gateway.gateway
    customer_id = await _customer_with_card(gateway, tenant_id, "pm_card_chargeCustomerFail")
    invoice = await g.create_invoice(customer_id, LINES, {}, f"invoice:credit-{tenant_id}")
    declined = await g.pay_invoice(invoice.id, f"pay:credit-{tenant_id}:1")
    assert declined.invoice.status == "open"
    assert declined.invoice.amount_due == 6134

    meta = {"credit_note_id": f"cn-{tenant_id}"}
    note = await g.credit_open_invoice(invoice.id, 2000, meta, f"credit-note:{tenant_id}:1")
    again = await g.credit_open_invoice(invoice.id, 2000, meta, f"credit-note:{tenant_id}:1")
    assert note.id.startswith("cn_")
    assert (note.amount, note.metadata["credit_note_id"]) == (2000, f"cn-{tenant_id}")
    assert (note.invoice.status, note.invoice.amount_due) == ("open", 4134)
    assert again.id == note.id  # the same key: the same credit note
    assert (await g.retrieve_invoice(invoice.id)).amount_due == 4134
    with pytest.raises(StripeInvalidRequest):
        await g.credit_open_invoice(invoice.id, 4135, {}, f"credit-note:{tenant_id}:2")

    # Credited in full: the invoice is settled without a charge.
    rest = await g.credit_open_invoice(invoice.id, 4134, {}, f"credit-note:{tenant_id}:3")
    assert (rest.invoice.status, rest.invoice.amount_due) == ("paid", 0)
    assert await gateway.succeeded_charges(customer_id) == 0
    with pytest.raises(StripeInvalidRequest):
        await g.credit_open_invoice(invoice.id, 1, {}, f"credit-note:{tenant_id}:4")


async def test_the_payment_after_a_credit_note_collects_what_is_left(
    gateway: GatewayUnderTest, tenant_id: str
) -> None:
    g = gateway.gateway
    customer_id = await _customer_with_card(gateway, tenant_id, "pm_card_visa")
    invoice = await g.create_invoice(customer_id, LINES, {}, f"invoice:credit-pay-{tenant_id}")
    await g.credit_open_invoice(invoice.id, 1134, {}, f"credit-note:{tenant_id}:pay")
    paid = await g.pay_invoice(invoice.id, f"pay:credit-pay-{tenant_id}:1")
    assert paid.succeeded
    assert (paid.invoice.status, paid.invoice.amount_paid) == ("paid", 5000)
