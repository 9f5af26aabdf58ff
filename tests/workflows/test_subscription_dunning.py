"""SubscriptionWorkflow wired to its dunning children (ADR 0005, "Parent wiring"), on the
time-skipping server with the real activities, real Postgres and the Stripe fake.

Each test has its own time-skipping server (the conftest fixture is per test): after a
parent/child pair with signals the Java test server stops skipping time for later runs."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from adapters.api_keys import Scope
from adapters.db.tables import (
    grace_periods,
    notification_deliveries,
    notification_endpoints,
    tenants,
)
from adapters.stripe_fake import FakeStripeGateway
from billing.dunning import DunningPolicy
from config import Settings
from tests.factories.subscription_workflows import SubscriptionFixture, make_subscription
from tests.factories.tenants import make_api_key
from tests.harness import Databases
from tests.workflows.helpers import (
    db_changes,
    db_invoices,
    db_subscription,
    start,
    to_next_boundary,
    until,
)
from workflows.dunning import DunningWorkflow, dunning_workflow_id
from workflows.dunning_io import DunningResult, DunningState
from workflows.subscription import SubscriptionWorkflow
from workflows.subscription_io import SetPaymentMethodRequest, StripeEventSignal

pytestmark = pytest.mark.usefixtures("workers")

START = "2027-04-01T00:00:00+00:00"
PRICE = 4900  # the standard plan, monthly


def pay_keys(invoice_id: str, attempts: range) -> list[str]:
    return [f"pay:{invoice_id}:{n}" for n in attempts]


async def child_state(env: WorkflowEnvironment, invoice_id: str) -> DunningState:
    handle: WorkflowHandle[DunningWorkflow, DunningResult] = env.client.get_workflow_handle_for(
        DunningWorkflow.run, dunning_workflow_id(invoice_id)
    )
    return await handle.query(DunningWorkflow.state)


async def child_until(
    env: WorkflowEnvironment, invoice_id: str, predicate: Any, *, polls: int = 300
) -> DunningState:
    """Each poll skips one second of test time (activity backoffs pass, business days barely
    move)."""
    current = await child_state(env, invoice_id)
    for _ in range(polls):
        if predicate(current):
            return current
        await env.sleep(timedelta(seconds=1))
        current = await child_state(env, invoice_id)
    raise AssertionError(f"dunning never matched: {current}")


async def with_endpoint(dbs: Databases, sub: SubscriptionFixture) -> None:
    async with dbs.worker.transaction() as conn:
        await conn.execute(
            notification_endpoints.insert().values(
                tenant_id=UUID(sub.input.tenant_id),
                url="https://tenant.invalid/hooks",
                secret="whsec_test",  # noqa: S106 - a test fixture, not a secret
            )
        )


async def notifications(dbs: Databases, sub: SubscriptionFixture) -> dict[str, dict[str, Any]]:
    """message_id -> payload of the tenant's queued notifications."""
    async with dbs.admin.transaction() as conn:
        rows = await conn.execute(
            select(notification_deliveries.c.message_id, notification_deliveries.c.payload).where(
                notification_deliveries.c.tenant_id == UUID(sub.input.tenant_id)
            )
        )
        return {r[0]: r[1] for r in rows}


async def test_three_failed_attempts_then_a_card_update_recovers_at_once(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    settings: Settings,
    task_queues: tuple[str, str],
    stripe_fake: FakeStripeGateway,
) -> None:
    sub = await make_subscription(dbs, task_queues=task_queues, business_start=START)
    await with_endpoint(dbs, sub)
    handle = await start(workflow_env, sub, settings.task_queue)
    st = await until(workflow_env, handle, lambda s: s.status == "active" and not s.open_invoices)
    assert st.stripe_customer_id is not None
    # The renewal and the first two dunning retries decline.
    stripe_fake.decline_next(st.stripe_customer_id, times=3)

    st = await to_next_boundary(workflow_env, handle)
    st = await until(workflow_env, handle, lambda s: bool(s.dunning_invoice_ids))
    assert st.status == "past_due"
    [invoice] = st.open_invoices
    assert st.dunning_invoice_ids == [invoice.invoice_id]
    # Dunning retries after 1 then 3 more days: attempts 2 and 3 decline.
    await workflow_env.sleep(timedelta(days=4, hours=12))
    dunning = await child_until(
        workflow_env, invoice.invoice_id, lambda s: s.last_attempt == 3 and s.phase == "waiting"
    )
    assert dunning.attempts == 2
    assert (await handle.query(SubscriptionWorkflow.state)).status == "past_due"

    # A card update reported by Stripe: the parent forwards it and the child retries at once.
    await handle.signal(
        SubscriptionWorkflow.stripe_event,
        StripeEventSignal("evt_pm_1", "payment_method.updated", stripe_payment_method_id="pm_1"),
    )
    st = await until(workflow_env, handle, lambda s: s.status == "active")
    assert st.open_invoices == []
    assert st.dunning_invoice_ids == []

    assert [c.amount for c in stripe_fake.charges] == [PRICE, PRICE]
    keys = stripe_fake.keys_for("pay_invoice")
    assert keys[1:] == pay_keys(invoice.invoice_id, range(1, 5))
    rows = await db_invoices(dbs, sub.input.subscription_id)
    assert [(r["status"], r["total"]) for r in rows] == [("paid", PRICE), ("paid", PRICE)]
    assert rows[1]["attempt_count"] == 4
    changes = await db_changes(dbs, sub.input.subscription_id)
    assert changes[-3:] == ["payment_failed", "renewed", "payment_recovered"]
    assert (await db_subscription(dbs, sub.input.subscription_id))["status"] == "active"

    notes = await notifications(dbs, sub)
    sid, iid = sub.input.subscription_id, invoice.invoice_id
    assert f"subscription.activated:{sid}" in notes
    failed = notes[f"invoice.payment_failed:{iid}:1"]
    assert failed["hosted_invoice_url"]
    assert failed["amount_due"] == PRICE
    assert f"invoice.paid:{iid}" in notes


async def test_all_attempts_fail_then_the_subscription_is_canceled_after_the_delay(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    settings: Settings,
    task_queues: tuple[str, str],
    stripe_fake: FakeStripeGateway,
) -> None:
    sub = await make_subscription(
        dbs,
        task_queues=task_queues,
        business_start=START,
        payment_method_id="pm_card_chargeCustomerFail",
    )
    policy = DunningPolicy(retry_after_days=(1, 2), cancel_after_days=3)
    sub = dataclasses.replace(
        sub, input=dataclasses.replace(sub.input, dunning_policy=policy.to_dict())
    )
    await with_endpoint(dbs, sub)
    handle = await start(workflow_env, sub, settings.task_queue)
    st = await until(workflow_env, handle, lambda s: bool(s.dunning_invoice_ids))
    assert st.status == "past_due"
    [invoice] = st.open_invoices
    assert invoice.stripe_invoice_id is not None

    # Attempts 2 (day 1) and 3 (day 3) decline; the schedule is exhausted.
    await workflow_env.sleep(timedelta(days=3, hours=1))
    st = await until(workflow_env, handle, lambda s: s.cancel_due_at is not None)
    assert st.status == "past_due"
    assert st.dunning_invoice_ids == []
    assert stripe_fake.charges == []
    assert stripe_fake.keys_for("pay_invoice") == pay_keys(invoice.invoice_id, range(1, 4))
    assert stripe_fake.invoice(invoice.stripe_invoice_id).status == "uncollectible"
    [row] = await db_invoices(dbs, sub.input.subscription_id)
    assert row["status"] == "uncollectible"

    # Not yet: the cancel comes 3 days after exhaustion.
    await workflow_env.sleep(timedelta(days=2))
    assert (await handle.query(SubscriptionWorkflow.state)).status == "past_due"
    await workflow_env.sleep(timedelta(days=1, hours=1))
    result = await handle.result()
    assert result.status == "canceled"
    db_sub = await db_subscription(dbs, sub.input.subscription_id)
    assert db_sub["status"] == "canceled"
    assert db_sub["canceled_at"] is not None
    changes = await db_changes(dbs, sub.input.subscription_id)
    assert changes[-2:] == ["dunning_exhausted", "canceled"]
    assert stripe_fake.charges == []
    notes = await notifications(dbs, sub)
    assert notes[f"subscription.canceled:{sub.input.subscription_id}"]["reason"] == "nonpayment"


async def test_paid_out_of_band_mid_dunning_stops_it_without_another_charge(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    settings: Settings,
    task_queues: tuple[str, str],
    stripe_fake: FakeStripeGateway,
) -> None:
    sub = await make_subscription(
        dbs,
        task_queues=task_queues,
        business_start=START,
        payment_method_id="pm_card_chargeCustomerFail",
    )
    handle = await start(workflow_env, sub, settings.task_queue)
    st = await until(workflow_env, handle, lambda s: bool(s.dunning_invoice_ids))
    [invoice] = st.open_invoices
    assert invoice.stripe_invoice_id is not None
    await workflow_env.sleep(timedelta(days=1, hours=1))
    await child_until(workflow_env, invoice.invoice_id, lambda s: s.last_attempt == 2)

    stripe_fake.mark_paid_out_of_band(invoice.stripe_invoice_id)
    paid = StripeEventSignal(
        "evt_paid", "invoice.paid", invoice_id=invoice.invoice_id, invoice_status="paid"
    )
    await handle.signal(SubscriptionWorkflow.stripe_event, paid)
    st = await until(workflow_env, handle, lambda s: s.status == "active")
    assert st.open_invoices == []
    assert st.dunning_invoice_ids == []
    dunning = await child_state(workflow_env, invoice.invoice_id)
    assert dunning.outcome == "paid_out_of_band"

    # Days pass: dunning stays stopped, nothing is charged.
    await workflow_env.sleep(timedelta(days=10))
    assert stripe_fake.charges == []
    assert stripe_fake.keys_for("pay_invoice") == pay_keys(invoice.invoice_id, range(1, 3))
    [row] = await db_invoices(dbs, sub.input.subscription_id)
    assert row["status"] == "paid"
    assert (await handle.query(SubscriptionWorkflow.state)).status == "active"


async def test_trial_ending_notice_three_days_before_the_trial_ends(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    settings: Settings,
    task_queues: tuple[str, str],
) -> None:
    sub = await make_subscription(dbs, task_queues=task_queues, business_start=START, trial_days=14)
    await with_endpoint(dbs, sub)
    handle = await start(workflow_env, sub, settings.task_queue)
    st = await until(workflow_env, handle, lambda s: s.status == "trialing")
    message_id = f"subscription.trial_ending:{sub.input.subscription_id}:{st.trial_end}"
    await workflow_env.sleep(timedelta(days=10, hours=12))
    assert message_id not in await notifications(dbs, sub)
    await workflow_env.sleep(timedelta(days=1))
    notes = await notifications(dbs, sub)
    for _ in range(100):
        if message_id in notes:
            break
        await workflow_env.sleep(timedelta(seconds=1))
        notes = await notifications(dbs, sub)
    assert notes[message_id] == {
        "subscription_id": sub.input.subscription_id,
        "trial_end": st.trial_end,
    }
    st = await to_next_boundary(workflow_env, handle)
    assert st.status == "active"
    assert f"subscription.activated:{sub.input.subscription_id}" in await notifications(dbs, sub)


async def test_card_expiring_notice_thirty_days_before_the_card_expires(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    settings: Settings,
    task_queues: tuple[str, str],
    stripe_fake: FakeStripeGateway,
) -> None:
    # Valid through May 2027: expires June 1, so the warning is due May 2, one day after the
    # first renewal (which continues-as-new: the timer is carried).
    card = stripe_fake.register_card(last4="1881", exp_month=5, exp_year=2027)
    sub = await make_subscription(
        dbs, task_queues=task_queues, business_start=START, payment_method_id=card
    )
    await with_endpoint(dbs, sub)
    handle = await start(workflow_env, sub, settings.task_queue)
    await until(workflow_env, handle, lambda s: s.status == "active" and not s.open_invoices)
    message_id = f"payment_method.expiring:{card}:2027-5"
    st = await to_next_boundary(workflow_env, handle)
    assert st.current_period_start == "2027-05-01T00:00:00+00:00"
    assert message_id not in await notifications(dbs, sub)
    await workflow_env.sleep(timedelta(days=1, hours=1))
    notes = await notifications(dbs, sub)
    for _ in range(100):
        if message_id in notes:
            break
        await workflow_env.sleep(timedelta(seconds=1))
        notes = await notifications(dbs, sub)
    assert notes[message_id] == {
        "payment_method_id": card,
        "brand": "visa",
        "last4": "1881",
        "exp_month": 5,
        "exp_year": 2027,
    }
    # The notice is no billing event: the next renewal is still due June 1.
    st = await until(workflow_env, handle, lambda s: True)
    assert st.current_period_end == "2027-06-01T00:00:00+00:00"
    assert [c.amount for c in stripe_fake.charges] == [PRICE, PRICE]


async def test_paid_after_exhaustion_but_before_the_cancel_keeps_the_subscription(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    settings: Settings,
    task_queues: tuple[str, str],
    stripe_fake: FakeStripeGateway,
) -> None:
    sub = await make_subscription(
        dbs,
        task_queues=task_queues,
        business_start=START,
        payment_method_id="pm_card_chargeCustomerFail",
    )
    policy = DunningPolicy(retry_after_days=(1,), cancel_after_days=3)
    sub = dataclasses.replace(
        sub, input=dataclasses.replace(sub.input, dunning_policy=policy.to_dict())
    )
    await with_endpoint(dbs, sub)
    handle = await start(workflow_env, sub, settings.task_queue)
    st = await until(workflow_env, handle, lambda s: bool(s.dunning_invoice_ids))
    [invoice] = st.open_invoices
    assert invoice.stripe_invoice_id is not None
    await workflow_env.sleep(timedelta(days=1, hours=1))
    st = await until(workflow_env, handle, lambda s: s.cancel_due_at is not None)
    # Exhausted on day 1 (April 2), canceled 3 days later unless paid.
    assert st.cancel_due_at is not None
    assert st.cancel_due_at.startswith("2027-04-05T00:0")

    # The customer pays the uncollectible invoice on the hosted page.
    stripe_fake.mark_paid_out_of_band(invoice.stripe_invoice_id)
    await handle.signal(
        SubscriptionWorkflow.stripe_event,
        StripeEventSignal(
            "evt_late_paid", "invoice.paid", invoice_id=invoice.invoice_id, invoice_status="paid"
        ),
    )
    st = await until(workflow_env, handle, lambda s: s.status == "active")
    assert st.cancel_due_at is None
    await workflow_env.sleep(timedelta(days=4))
    st = await until(workflow_env, handle, lambda s: True)
    assert st.status == "active"
    [row] = await db_invoices(dbs, sub.input.subscription_id)
    assert (row["status"], row["attempt_count"]) == ("paid", 2)
    assert "canceled" not in await db_changes(dbs, sub.input.subscription_id)
    assert f"invoice.paid:{invoice.invoice_id}" in await notifications(dbs, sub)


async def access_status(env: WorkflowEnvironment, dbs: Databases, tenant_id: str, want: str) -> str:
    """The tenant's access status once it reads `want` (polled on test time), else the last."""
    current = ""
    for _ in range(120):
        async with dbs.admin.transaction() as conn:
            current = (
                await conn.execute(select(tenants.c.access_status).where(tenants.c.id == tenant_id))
            ).scalar_one()
        if current == want:
            break
        await env.sleep(timedelta(seconds=1))
    return current


async def quota_check(api: httpx.AsyncClient, key: str) -> httpx.Response:
    return await api.get(
        "/api/billing/usage/check",
        params={"metric": "api_calls", "quantity": 1},
        headers={"Authorization": f"Bearer {key}"},
    )


async def test_unpaid_invoice_suspends_at_grace_expiry_then_cancels(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    settings: Settings,
    task_queues: tuple[str, str],
    stripe_fake: FakeStripeGateway,
    api: httpx.AsyncClient,
) -> None:
    """Issue 4: all attempts fail -> suspended when the payment grace expires (the quota check
    answers 402 payment_overdue) -> canceled after the policy's delay, invoice uncollectible."""
    sub = await make_subscription(
        dbs,
        task_queues=task_queues,
        business_start=START,
        payment_method_id="pm_card_chargeCustomerFail",
    )
    policy = DunningPolicy(retry_after_days=(1, 2), cancel_after_days=3)
    sub = dataclasses.replace(
        sub,
        input=dataclasses.replace(sub.input, dunning_policy=policy.to_dict(), payment_grace_days=2),
    )
    key = await make_api_key(dbs, UUID(sub.input.tenant_id), [Scope.READ])
    handle = await start(workflow_env, sub, settings.task_queue)
    st = await until(workflow_env, handle, lambda s: bool(s.dunning_invoice_ids))
    [invoice] = st.open_invoices
    assert invoice.stripe_invoice_id is not None
    # Access continues during the grace window.
    assert await access_status(workflow_env, dbs, sub.input.tenant_id, "active") == "active"
    assert (await quota_check(api, key)).status_code == 200

    await workflow_env.sleep(timedelta(days=2, hours=1))
    assert await access_status(workflow_env, dbs, sub.input.tenant_id, "suspended") == "suspended"
    blocked = await quota_check(api, key)
    assert blocked.status_code == 402
    assert blocked.json()["reason"] == "payment_overdue"

    # Exhausted on day 3, canceled 3 days later; the tenant stays suspended, nothing charged.
    await workflow_env.sleep(timedelta(days=4, hours=1))
    result: Any = await handle.result()
    assert result.status == "canceled"
    assert stripe_fake.invoice(invoice.stripe_invoice_id).status == "uncollectible"
    assert stripe_fake.charges == []
    assert await access_status(workflow_env, dbs, sub.input.tenant_id, "x") == "suspended"
    async with dbs.admin.transaction() as conn:
        grace = (await conn.execute(select(grace_periods))).mappings().one()
    assert (grace["kind"], grace["subject"]) == ("payment", invoice.invoice_id)
    assert grace["resolution"] == "canceled"


async def test_payment_after_suspension_reactivates_the_tenant_at_once(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    settings: Settings,
    task_queues: tuple[str, str],
    stripe_fake: FakeStripeGateway,
    api: httpx.AsyncClient,
) -> None:
    """Issue 4: a card update after the grace expired -> the retry succeeds -> active subscription,
    grace resolved "paid", tenant active again (quota check allows)."""
    sub = await make_subscription(
        dbs,
        task_queues=task_queues,
        business_start=START,
        payment_method_id="pm_card_chargeCustomerFail",
    )
    sub = dataclasses.replace(sub, input=dataclasses.replace(sub.input, payment_grace_days=1))
    key = await make_api_key(dbs, UUID(sub.input.tenant_id), [Scope.READ])
    handle = await start(workflow_env, sub, settings.task_queue)
    await until(workflow_env, handle, lambda s: bool(s.dunning_invoice_ids))
    await workflow_env.sleep(timedelta(days=1, hours=2))
    assert await access_status(workflow_env, dbs, sub.input.tenant_id, "suspended") == "suspended"
    assert (await quota_check(api, key)).status_code == 402

    await handle.execute_update(
        SubscriptionWorkflow.set_payment_method, SetPaymentMethodRequest("pm_card_visa", "tests")
    )
    await until(workflow_env, handle, lambda s: s.status == "active")
    assert await access_status(workflow_env, dbs, sub.input.tenant_id, "active") == "active"
    assert (await quota_check(api, key)).status_code == 200
    assert [c.amount for c in stripe_fake.charges] == [PRICE]
    async with dbs.admin.transaction() as conn:
        grace = (await conn.execute(select(grace_periods))).mappings().one()
    assert grace["resolution"] == "paid"
