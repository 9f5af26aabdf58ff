"""The in-memory gateway keeps Stripe's idempotency semantics and plays scripted outcomes."""

from __future__ import annotations

import asyncio

import pytest

from adapters.stripe_fake import FakeCall, FakeStripeGateway
from billing.payments import (
    InvoiceLine,
    StripeIdempotencyError,
    StripeInvalidRequest,
    StripeNotFound,
    StripePaymentMethodMissing,
    StripeTransientError,
)

LINES = [InvoiceLine("Standard plan", 4900, "usd"), InvoiceLine("Overage", 100, "usd")]


async def _paying_customer(
    fake: FakeStripeGateway, tenant: str = "t1", card: str = "pm_card_visa"
) -> str:
    customer = await fake.ensure_customer(tenant, f"{tenant}@x.test", tenant, f"customer:{tenant}")
    await fake.attach_payment_method(customer.id, card, f"payment-method:{tenant}:1")
    return customer.id


# ---------------------------------------------------------------------------- idempotency


async def test_replay_with_same_key_returns_first_result_without_second_effect() -> None:
    fake = FakeStripeGateway()

    first = await fake.ensure_customer("t1", "a@x.test", "A", "customer:t1")
    second = await fake.ensure_customer("t1", "a@x.test", "A", "customer:t1")

    assert second is first
    assert len(fake.customers) == 1
    assert (
        fake.calls
        == [
            FakeCall(
                "ensure_customer",
                "customer:t1",
                {"email": "a@x.test", "name": "A", "tenant_id": "t1"},
            ),
        ]
        * 2
    )


async def test_same_key_with_different_parameters_is_an_idempotency_error() -> None:
    fake = FakeStripeGateway()
    await fake.ensure_customer("t1", "a@x.test", "A", "customer:t1")

    with pytest.raises(StripeIdempotencyError) as caught:
        await fake.ensure_customer("t1", "changed@x.test", "A", "customer:t1")

    assert isinstance(caught.value, StripeInvalidRequest)
    assert not caught.value.retryable
    assert len(fake.customers) == 1


async def test_same_key_on_another_method_is_an_idempotency_error() -> None:
    fake = FakeStripeGateway()
    customer_id = await _paying_customer(fake)
    invoice = await fake.create_invoice(customer_id, LINES, {}, "invoice:i1")

    with pytest.raises(StripeIdempotencyError):
        await fake.void_invoice(invoice.id, "invoice:i1")


async def test_replayed_create_invoice_creates_no_second_invoice_or_items() -> None:
    fake = FakeStripeGateway()
    customer_id = await _paying_customer(fake)

    first = await fake.create_invoice(customer_id, LINES, {"invoice_id": "i1"}, "invoice:i1")
    again = await fake.create_invoice(customer_id, LINES, {"invoice_id": "i1"}, "invoice:i1")

    assert again == first
    assert [i.id for i in fake.invoices] == ["in_fake_0001"]
    assert first.amount_due == 5000
    # Changing a line under the same key is a caller bug, not a new invoice.
    with pytest.raises(StripeIdempotencyError):
        await fake.create_invoice(
            customer_id,
            [InvoiceLine("Standard plan", 5900, "usd")],
            {"invoice_id": "i1"},
            "invoice:i1",
        )


async def test_replayed_decline_is_the_same_decline_and_a_new_attempt_can_succeed() -> None:
    fake = FakeStripeGateway()
    customer_id = await _paying_customer(fake)
    invoice = await fake.create_invoice(customer_id, LINES, {}, "invoice:i1")
    fake.decline_next(customer_id, "insufficient_funds")

    declined = await fake.pay_invoice(invoice.id, "pay:i1:1")
    replayed = await fake.pay_invoice(invoice.id, "pay:i1:1")
    retried = await fake.pay_invoice(invoice.id, "pay:i1:2")

    assert not declined.succeeded
    assert declined.decline_code == "insufficient_funds"
    assert declined.failure_message == "Your card has insufficient funds."
    assert replayed == declined  # the same attempt is not charged again
    assert retried.succeeded
    assert retried.invoice.amount_paid == 5000
    assert len(fake.charges_for(invoice.id)) == 1


async def test_twelve_renewals_with_retries_send_twelve_distinct_invoice_keys() -> None:
    fake = FakeStripeGateway()
    customer_id = await _paying_customer(fake)

    for month in range(1, 13):
        key = f"invoice:inv-2026-{month:02d}"
        fake.fail_next("create_invoice")  # every renewal's first try hits a transient error
        with pytest.raises(StripeTransientError):
            await fake.create_invoice(customer_id, LINES, {}, key)
        invoice = await fake.create_invoice(customer_id, LINES, {}, key)
        await fake.create_invoice(customer_id, LINES, {}, key)  # a replayed activity
        await fake.pay_invoice(invoice.id, f"pay:inv-2026-{month:02d}:1")

    assert len(set(fake.keys_for("create_invoice"))) == 12
    assert len(fake.keys_for("create_invoice")) == 36
    assert len(fake.invoices) == 12
    assert sum(c.amount for c in fake.charges) == 12 * 5000


# ---------------------------------------------------------------------------- faults


async def test_transient_failures_happen_before_the_effect_then_the_retry_succeeds() -> None:
    fake = FakeStripeGateway()
    customer_id = await _paying_customer(fake)
    invoice = await fake.create_invoice(customer_id, LINES, {}, "invoice:i1")
    fake.fail_next("pay_invoice", times=2)

    for _ in range(2):
        with pytest.raises(StripeTransientError) as caught:
            await fake.pay_invoice(invoice.id, "pay:i1:1")
        assert caught.value.retryable
        assert fake.invoice(invoice.id).status == "open"
        assert fake.charges == []

    outcome = await fake.pay_invoice(invoice.id, "pay:i1:1")

    assert outcome.succeeded
    assert len(fake.charges) == 1
    assert fake.keys_for("pay_invoice") == ["pay:i1:1"] * 3


async def test_outage_fails_every_call_until_cleared() -> None:
    fake = FakeStripeGateway()
    customer_id = await _paying_customer(fake)
    invoice = await fake.create_invoice(customer_id, LINES, {}, "invoice:i1")

    fake.start_outage()
    for call in (
        fake.retrieve_invoice(invoice.id),
        fake.pay_invoice(invoice.id, "pay:i1:1"),
        fake.ensure_customer("t2", "b@x.test", "B", "customer:t2"),
    ):
        with pytest.raises(StripeTransientError):
            await call
    assert fake.in_outage
    fake.end_outage()

    assert (await fake.pay_invoice(invoice.id, "pay:i1:1")).succeeded


async def test_fail_next_rejects_unknown_method_names() -> None:
    with pytest.raises(ValueError, match="unknown gateway method"):
        FakeStripeGateway().fail_next("pay")


# ---------------------------------------------------------------------------- scripted payments


async def test_decline_next_applies_to_that_customer_only_and_then_runs_out() -> None:
    fake = FakeStripeGateway()
    declining = await _paying_customer(fake, "t1")
    other = await _paying_customer(fake, "t2")
    inv_a = await fake.create_invoice(declining, LINES, {}, "invoice:a")
    inv_b = await fake.create_invoice(other, LINES, {}, "invoice:b")
    fake.decline_next(declining, "expired_card", times=2)

    assert (await fake.pay_invoice(inv_b.id, "pay:b:1")).succeeded
    assert (await fake.pay_invoice(inv_a.id, "pay:a:1")).decline_code == "expired_card"
    assert (await fake.pay_invoice(inv_a.id, "pay:a:2")).decline_code == "expired_card"
    assert (await fake.pay_invoice(inv_a.id, "pay:a:3")).succeeded


async def test_test_card_aliases_behave_like_stripes() -> None:
    fake = FakeStripeGateway()
    failing = await _paying_customer(fake, "t1", "pm_card_chargeCustomerFail")
    three_ds = await _paying_customer(fake, "t2", "pm_card_authenticationRequired")
    inv_fail = await fake.create_invoice(failing, LINES, {}, "invoice:a")
    inv_3ds = await fake.create_invoice(three_ds, LINES, {}, "invoice:b")

    declined = await fake.pay_invoice(inv_fail.id, "pay:a:1")
    needs_action = await fake.pay_invoice(inv_3ds.id, "pay:b:1")

    assert (declined.succeeded, declined.decline_code, declined.requires_action) == (
        False,
        "card_declined",
        False,
    )
    assert (needs_action.succeeded, needs_action.requires_action) == (False, True)
    assert fake.charges == []


async def test_require_action_next_then_card_update_succeeds() -> None:
    fake = FakeStripeGateway()
    customer_id = await _paying_customer(fake)
    invoice = await fake.create_invoice(customer_id, LINES, {}, "invoice:i1")
    fake.require_action_next(customer_id)

    first = await fake.pay_invoice(invoice.id, "pay:i1:1")
    new_card = fake.register_card(brand="mastercard", last4="4444")
    card = await fake.attach_payment_method(customer_id, new_card, "payment-method:t1:2")
    second = await fake.pay_invoice(invoice.id, "pay:i1:2")

    assert first.requires_action
    assert not first.succeeded
    assert (card.brand, card.last4) == ("mastercard", "4444")
    assert second.succeeded
    assert fake.charges[0].payment_method_id == new_card


async def test_registered_card_can_decline_with_a_chosen_code() -> None:
    fake = FakeStripeGateway()
    customer = await fake.ensure_customer("t1", "a@x.test", "A", "customer:t1")
    pm = fake.register_card(behaviour="declines", decline_code="insufficient_funds")
    await fake.attach_payment_method(customer.id, pm, "payment-method:t1:1")
    invoice = await fake.create_invoice(customer.id, LINES, {}, "invoice:i1")

    assert (await fake.pay_invoice(invoice.id, "pay:i1:1")).decline_code == "insufficient_funds"


async def test_paid_out_of_band_invoice_is_not_charged() -> None:
    fake = FakeStripeGateway()
    customer_id = await _paying_customer(fake)
    invoice = await fake.create_invoice(customer_id, LINES, {}, "invoice:i1")

    fake.mark_paid_out_of_band(invoice.id)
    outcome = await fake.pay_invoice(invoice.id, "pay:i1:1")

    assert outcome.succeeded
    assert outcome.invoice.status == "paid"
    assert fake.charges == []


async def test_missing_card_does_not_consume_the_key() -> None:
    fake = FakeStripeGateway()
    customer = await fake.ensure_customer("t1", "a@x.test", "A", "customer:t1")
    invoice = await fake.create_invoice(customer.id, LINES, {}, "invoice:i1")

    with pytest.raises(StripePaymentMethodMissing):
        await fake.pay_invoice(invoice.id, "pay:i1:1")
    await fake.attach_payment_method(customer.id, "pm_card_visa", "payment-method:t1:1")

    assert (await fake.pay_invoice(invoice.id, "pay:i1:1")).succeeded


async def test_ids_are_deterministic() -> None:
    fake = FakeStripeGateway()
    customer_id = await _paying_customer(fake)
    invoice = await fake.create_invoice(customer_id, LINES, {}, "invoice:i1")

    assert customer_id == "cus_fake_0001"
    assert invoice.id == "in_fake_0001"
    assert invoice.hosted_invoice_url is not None
    assert invoice.id in invoice.hosted_invoice_url


async def test_unknown_objects_are_not_found() -> None:
    fake = FakeStripeGateway()
    with pytest.raises(StripeNotFound):
        await fake.retrieve_payment_method("pm_nope")
    with pytest.raises(StripeNotFound):
        await fake.attach_payment_method("cus_nope", "pm_card_visa", "payment-method:x:1")


@pytest.mark.parametrize("key", ["", "   ", "k" * 250])
async def test_unusable_idempotency_keys_are_refused(key: str) -> None:
    with pytest.raises(StripeInvalidRequest):
        await FakeStripeGateway().ensure_customer("t1", "a@x.test", "A", key)


async def test_invoice_lines_must_share_one_currency() -> None:
    fake = FakeStripeGateway()
    customer_id = await _paying_customer(fake)
    mixed = [InvoiceLine("a", 100, "usd"), InvoiceLine("b", 100, "eur")]

    with pytest.raises(StripeInvalidRequest, match="mix currencies"):
        await fake.create_invoice(customer_id, mixed, {}, "invoice:i1")


# ---------------------------------------------------------------------------- concurrency


async def test_twenty_concurrent_ensure_customer_with_one_key_make_one_customer() -> None:
    fake = FakeStripeGateway(latency_seconds=0.001)

    results = await asyncio.gather(
        *(fake.ensure_customer("t1", "a@x.test", "A", "customer:t1") for _ in range(20))
    )

    assert len({c.id for c in results}) == 1
    assert len(fake.customers) == 1
    assert len(fake.calls) == 20


async def test_concurrent_attempts_on_one_invoice_charge_once() -> None:
    fake = FakeStripeGateway(latency_seconds=0.001)
    customer_id = await _paying_customer(fake)
    invoice = await fake.create_invoice(customer_id, LINES, {}, "invoice:i1")

    # Same attempt replayed, and two different attempts (e.g. a retry racing a card update).
    keys = ["pay:i1:1"] * 5 + ["pay:i1:2", "pay:i1:3"]
    outcomes = await asyncio.gather(*(fake.pay_invoice(invoice.id, k) for k in keys))

    assert all(o.succeeded for o in outcomes)
    assert len(fake.charges) == 1


async def test_concurrent_customers_on_distinct_keys_get_distinct_ids() -> None:
    fake = FakeStripeGateway(latency_seconds=0.001)

    results = await asyncio.gather(
        *(fake.ensure_customer(f"t{n}", "a@x.test", "A", f"customer:t{n}") for n in range(20))
    )

    assert len({c.id for c in results}) == 20
    assert {c.metadata["tenant_id"] for c in results} == {f"t{n}" for n in range(20)}


async def test_health_check_fails_during_an_outage() -> None:
    fake = FakeStripeGateway()
    await fake.health_check()
    fake.start_outage()

    with pytest.raises(StripeTransientError):
        await fake.health_check()
