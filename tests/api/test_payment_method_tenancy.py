"""Payment methods and tenancy, through the API as a user would: another tenant's card is
refused (with the answer an unknown id gets) and leaves its owner's rows byte-for-byte unchanged;
a card can be added before subscribing, and the subscription then uses it; `GET /account`."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from adapters.stripe_fake import FakeStripeGateway
from tests.api.test_billing_api import subscribe_with_card
from tests.factories.tenants import TenantWithKey, make_tenant
from tests.harness import Databases, tenant_rows

SUB = "/api/billing/subscription"
PM = "/api/billing/payment-methods"


async def _card_of(api: httpx.AsyncClient, tenant: TenantWithKey) -> str:
    for _ in range(200):
        listed = (await api.get(PM, headers=tenant.headers)).json()
        if listed:
            return str(listed[0]["stripe_payment_method_id"])
        await asyncio.sleep(0.05)
    raise AssertionError("the card was never recorded")


async def _subscribed_with_card(api: httpx.AsyncClient, dbs: Databases) -> TenantWithKey:
    tenant = await subscribe_with_card(api, dbs)
    await _card_of(api, tenant)
    return tenant


@pytest.mark.usefixtures("workers")
@pytest.mark.parametrize("b_has_subscription", [True, False])
async def test_another_tenants_card_is_refused_and_its_rows_are_unchanged(
    b_has_subscription: bool,
    api: httpx.AsyncClient,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
) -> None:
    a = await _subscribed_with_card(api, dbs)
    a_card = await _card_of(api, a)
    b = await (_subscribed_with_card(api, dbs) if b_has_subscription else make_tenant(dbs))
    # Let A's workflow settle (projections written), then take the snapshot.
    await asyncio.sleep(0.3)
    a_before = await tenant_rows(dbs, a.id)
    b_before = await tenant_rows(dbs, b.id)
    a_customer = stripe_fake.payment_method_customer(a_card)
    assert a_customer is not None

    stolen = await api.post(PM, json={"payment_method_id": a_card}, headers=b.headers)
    unknown = await api.post(PM, json={"payment_method_id": "pm_does_not_exist"}, headers=b.headers)

    assert stolen.status_code == 422, stolen.text
    assert unknown.status_code == 422, unknown.text
    # The same answer as for an id that exists nowhere: nothing about tenant A is revealed.
    assert stolen.json()["error"]["code"] == unknown.json()["error"]["code"]
    assert stolen.json()["error"]["message"].replace(a_card, "X") == unknown.json()["error"][
        "message"
    ].replace("pm_does_not_exist", "X")
    assert await tenant_rows(dbs, a.id) == a_before
    assert stripe_fake.payment_method_customer(a_card) == a_customer
    b_after = await tenant_rows(dbs, b.id)
    assert b_after["payment_methods"] == b_before["payment_methods"]


@pytest.mark.usefixtures("workers")
async def test_a_card_added_before_subscribing_is_the_subscriptions_card(
    api: httpx.AsyncClient, dbs: Databases, stripe_fake: FakeStripeGateway
) -> None:
    tenant = await make_tenant(dbs)
    account = (await api.get("/api/billing/account", headers=tenant.headers)).json()
    assert account["stripe_customer_id"] is None
    assert account["default_payment_method"] is None
    assert account["access_status"] == "active"
    assert account["suspension_reason"] is None

    added = await api.post(PM, json={"payment_method_id": "pm_card_visa"}, headers=tenant.headers)
    assert added.status_code == 201, added.text
    assert added.json()["created_at"] is not None
    assert added.json()["is_default"] is True
    account = (await api.get("/api/billing/account", headers=tenant.headers)).json()
    assert account["stripe_customer_id"] is not None
    assert (
        account["default_payment_method"]["stripe_payment_method_id"]
        == (added.json()["stripe_payment_method_id"])
    )
    # Adding it again is idempotent: one card, one customer.
    again = await api.post(
        PM, json={"payment_method_id": added.json()["stripe_payment_method_id"]},
        headers=tenant.headers,
    )  # fmt: skip
    assert again.status_code == 201, again.text

    created = await api.post(SUB, json={"plan_code": "standard"}, headers=tenant.headers)
    assert created.status_code == 201, created.text
    for _ in range(200):
        sub = (await api.get(SUB, headers=tenant.headers)).json()
        if sub["status"] == "trialing":
            break
        await asyncio.sleep(0.05)
    assert sub["status"] == "trialing"
    customers = [c for c in stripe_fake.customers if c.metadata.get("tenant_id") == str(tenant.id)]
    assert [c.id for c in customers] == [account["stripe_customer_id"]]
    listed = (await api.get(PM, headers=tenant.headers)).json()
    assert [m["stripe_payment_method_id"] for m in listed] == [
        added.json()["stripe_payment_method_id"]
    ]
