"""Coupons and promotion codes (ADR 0023) on the real stack: a repeating coupon redeemed at
sign-up discounts the first and the N-th billed period and not the N+1-th; the upcoming invoice
shows the discount as the bill will; redemptions are counted race-free under concurrent
sign-ups; one active discount at a time, and a refused one gives its redemption back."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from adapters.db.tables import coupons, promotion_codes
from services.context import Services
from tests.api.test_billing_api import SUB, _until, align_clock, subscribe_with_card
from tests.factories.tenants import make_tenant, operator_headers
from tests.harness import Databases
from tests.replay.recording import record

OPS = "/api/billing/operator"


async def _coupon(api: httpx.AsyncClient, op: dict[str, str], **fields: object) -> None:
    made = await api.post(f"{OPS}/coupons", json=fields, headers=op)
    assert made.status_code == 201, made.text


async def _promo(
    api: httpx.AsyncClient, op: dict[str, str], coupon: str, code: str, **limits: object
) -> None:
    made = await api.post(
        f"{OPS}/coupons/{coupon}/promotion-codes", json={"code": code, **limits}, headers=op
    )
    assert made.status_code == 201, made.text


async def _discount(api: httpx.AsyncClient, headers: dict[str, str], invoice_id: str) -> int:
    detail = (await api.get(f"/api/billing/invoices/{invoice_id}", headers=headers)).json()
    return -sum(i["amount"] for i in detail["items"] if i["kind"] == "discount")


@pytest.mark.usefixtures("workers")
async def test_a_repeating_coupon_covers_its_periods_and_no_more(
    api: httpx.AsyncClient, dbs: Databases, workflow_env: WorkflowEnvironment, services: Services
) -> None:
    op = await operator_headers(dbs)
    await _coupon(api, op, code="SAVE20", name="20% for two months", percent_off=20,
                  duration="repeating", duration_periods=2)  # fmt: skip
    await _promo(api, op, "SAVE20", "LAUNCH")
    tenant = await make_tenant(dbs)
    created = await api.post(
        SUB, json={"plan_code": "standard", "payment_method_id": "pm_card_visa",
                   "promotion_code": "LAUNCH"}, headers=tenant.headers,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    await _until(api, tenant, lambda b: b["status"] == "trialing")
    await align_clock(services, workflow_env)
    upcoming = (await api.get("/api/billing/invoices/upcoming", headers=tenant.headers)).json()
    assert upcoming["next_invoice_total"] == 4900 - 980  # the preview shows the discount

    await workflow_env.sleep(timedelta(days=14, hours=1))  # the trial ends: period 1 billed
    for n in (2, 3):
        await _until(
            api,
            tenant,
            lambda b, n=n: len(b["data"]) == n - 1 and b["data"][0]["status"] == "paid",
            "/api/billing/invoices",
        )  # fmt: skip
        await workflow_env.sleep(timedelta(days=31))
    invoices = await _until(
        api, tenant, lambda b: len(b["data"]) == 3 and b["data"][0]["status"] == "paid",
        "/api/billing/invoices",
    )  # fmt: skip
    billed = list(reversed(invoices["data"]))
    assert [await _discount(api, tenant.headers, i["id"]) for i in billed] == [980, 980, 0]
    assert [i["total"] for i in billed] == [3920, 3920, 4900]
    assert billed[0]["total"] == upcoming["next_invoice_total"]  # the bill is the preview
    live = (await api.get(SUB, headers=tenant.headers)).json()
    await record(
        workflow_env.client.get_workflow_handle(live["workflow_id"]), "subscription_with_coupon"
    )


@pytest.mark.usefixtures("workers")
async def test_redemptions_are_counted_race_free_and_refusals_count_nothing(
    api: httpx.AsyncClient, dbs: Databases, workflow_env: WorkflowEnvironment, services: Services
) -> None:
    op = await operator_headers(dbs)
    await _coupon(api, op, code="ONLYONE", name="10 dollars once", amount_off=1000,
                  currency="usd", duration="once")  # fmt: skip
    await _promo(api, op, "ONLYONE", "FIRST", max_redemptions=1)
    tenants = [await make_tenant(dbs) for _ in range(3)]
    answers = await asyncio.gather(
        *(
            api.post(
                SUB, json={"plan_code": "standard", "promotion_code": "FIRST"}, headers=t.headers
            )  # fmt: skip
            for t in tenants
        )
    )
    assert sorted(a.status_code for a in answers) == [201, 409, 409]
    refused = next(a for a in answers if a.status_code == 409)
    assert refused.json()["error"]["code"] == "coupon_refused"
    async with dbs.admin.transaction() as conn:
        counts = (
            await conn.scalar(select(coupons.c.redemptions).where(coupons.c.code == "ONLYONE")),
            await conn.scalar(
                select(promotion_codes.c.redemptions).where(promotion_codes.c.code == "FIRST")
            ),
        )
    assert counts == (1, 1)


@pytest.mark.usefixtures("workers")
async def test_one_discount_at_a_time_applied_later_by_the_tenant_or_an_operator(
    api: httpx.AsyncClient, dbs: Databases, workflow_env: WorkflowEnvironment, services: Services
) -> None:
    op = await operator_headers(dbs)
    await _coupon(api, op, code="FOREVER5", name="5% forever", percent_off=5, duration="forever")
    await _promo(api, op, "FOREVER5", "LOYAL")
    await _promo(api, op, "FOREVER5", "LOYAL2")
    tenant = await subscribe_with_card(api, dbs)
    applied = await api.post(
        f"{SUB}/discount", json={"promotion_code": "LOYAL"}, headers=tenant.headers
    )
    assert applied.status_code == 200, applied.text
    second = await api.post(
        f"{OPS}/tenants/{tenant.id}/discount",
        json={"promotion_code": "LOYAL2", "reason": "goodwill"}, headers=op,
    )  # fmt: skip
    assert second.status_code == 409, second.text
    assert second.json()["error"]["code"] == "invalid_transition"
    unknown = await api.post(
        f"{SUB}/discount", json={"promotion_code": "NOPE"}, headers=tenant.headers
    )
    assert unknown.status_code == 409
    assert unknown.json()["error"]["code"] == "coupon_refused"
    async with dbs.admin.transaction() as conn:
        given_back = await conn.scalar(
            select(promotion_codes.c.redemptions).where(promotion_codes.c.code == "LOYAL2")
        )
    assert given_back == 0
    upcoming = (await api.get("/api/billing/invoices/upcoming", headers=tenant.headers)).json()
    assert upcoming["next_invoice_total"] == 4900 - 245
    bad = await api.post(
        f"{OPS}/coupons", json={"code": "X", "name": "x", "percent_off": 5, "amount_off": 5,
                                "currency": "usd"}, headers=op,
    )  # fmt: skip
    assert bad.status_code == 422
    again = await api.post(
        f"{OPS}/coupons", json={"code": "FOREVER5", "name": "x", "percent_off": 5}, headers=op
    )
    assert again.status_code == 409


@pytest.mark.usefixtures("workers")
async def test_a_discount_accepted_but_still_being_applied_keeps_its_redemption(
    api: httpx.AsyncClient, dbs: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a discount the subscription refused, or never accepted, gives its redemption back:
    one accepted and still running will be applied, so its redemption counts (given back, a
    code limited to one could discount two subscriptions)."""
    import services.coupons
    from services.commands import StillRunning

    op = await operator_headers(dbs)
    await _coupon(api, op, code="SLOW10", name="10% once", percent_off=10, duration="once")
    await _promo(api, op, "SLOW10", "SLOWPOKE", max_redemptions=1)
    tenant = await subscribe_with_card(api, dbs)

    async def accepted_still_running(*_: object) -> object:
        raise StillRunning("the change was accepted and is still being applied")

    monkeypatch.setattr(services.coupons, "command", accepted_still_running)
    answer = await api.post(
        f"{SUB}/discount", json={"promotion_code": "SLOWPOKE"}, headers=tenant.headers
    )
    assert answer.status_code == 202, answer.text
    async with dbs.admin.transaction() as conn:
        redemptions = await conn.scalar(
            select(promotion_codes.c.redemptions).where(promotion_codes.c.code == "SLOWPOKE")
        )
    assert redemptions == 1
