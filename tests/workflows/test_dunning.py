"""Time-skipping tests of the dunning workflow with the real worker registration, real Postgres
and the Stripe fake (which keeps Stripe's idempotency semantics)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.db.tables import dunning_attempts, invoices, notification_deliveries
from adapters.stripe_fake import FakeStripeGateway
from billing.dunning import DunningPolicy
from config import Settings
from tests.factories.invoices import UnpaidInvoice, make_unpaid_invoice
from tests.harness import Databases, start_time_skipping_env
from tests.workflows.details import current_details
from workflows import search_attributes
from workflows.dunning import DunningWorkflow, dunning_workflow_id
from workflows.dunning_io import (
    DunningInput,
    DunningResult,
    DunningState,
    InvoicePaid,
    PaymentMethodUpdated,
)

Handle = WorkflowHandle[DunningWorkflow, DunningResult]


@pytest.fixture(scope="module")
async def workflow_env() -> AsyncIterator[WorkflowEnvironment]:
    """This module's own time-skipping server. On the shared one, a workflow another module left
    running (a subscription asleep until its renewal, its worker gone) gets a workflow task
    nobody polls when skipped time reaches its timer, and a pending task stops time skipping
    for everyone: these tests would hang."""
    env = await start_time_skipping_env()
    yield env
    await env.shutdown()


def dunning_input_for(
    settings: Settings, inv: UnpaidInvoice, policy: DunningPolicy, time_scale: float = 1.0
) -> DunningInput:
    return DunningInput(
        invoice_id=str(inv.invoice_id),
        stripe_invoice_id=inv.stripe_invoice_id,
        tenant_id=str(inv.tenant_id),
        subscription_id=str(inv.subscription_id),
        currency=inv.currency,
        amount_due=inv.amount_due,
        hosted_invoice_url=inv.hosted_invoice_url,
        policy=policy.to_dict(),
        stripe_task_queue=settings.stripe_task_queue,
        time_scale=time_scale,
        invoice_version=1,
    )


async def start_dunning(
    env: WorkflowEnvironment,
    settings: Settings,
    inv: UnpaidInvoice,
    policy: DunningPolicy | None = None,
    time_scale: float = 1.0,
) -> Handle:
    return await env.client.start_workflow(
        DunningWorkflow.run,
        dunning_input_for(settings, inv, policy or DunningPolicy(), time_scale),
        id=dunning_workflow_id(str(inv.invoice_id)),
        task_queue=settings.task_queue,
    )


async def wait_for(handle: Handle, predicate: Callable[[DunningState], bool]) -> DunningState:
    """Poll the workflow's state (wall-clock polling only: no assertion depends on its timing).
    Workflow time does not move meanwhile: only `env.sleep` and awaiting a result skip it."""
    state = None
    for _ in range(1000):
        state = await handle.query(DunningWorkflow.state)
        if predicate(state):
            return state
        await asyncio.sleep(0.01)
    raise AssertionError(f"the workflow never reached the expected state; last: {state}")


@dataclass(frozen=True)
class Attempt:
    attempt: int
    idempotency_key: str
    attempted_at: datetime
    outcome: str


async def attempts_of(dbs: Databases, inv: UnpaidInvoice) -> list[Attempt]:
    async with dbs.admin.transaction() as conn:
        rows = await conn.execute(
            select(
                dunning_attempts.c.attempt,
                dunning_attempts.c.idempotency_key,
                dunning_attempts.c.attempted_at,
                dunning_attempts.c.outcome,
            )
            .where(dunning_attempts.c.invoice_id == inv.invoice_id)
            .order_by(dunning_attempts.c.attempt)
        )
        return [Attempt(*row) for row in rows]


async def invoice_row(dbs: Databases, inv: UnpaidInvoice) -> dict[str, Any]:
    async with dbs.admin.transaction() as conn:
        row = (await conn.execute(select(invoices).where(invoices.c.id == inv.invoice_id))).one()
        return dict(row._mapping)


async def notifications_of(dbs: Databases, inv: UnpaidInvoice) -> list[tuple[str, str]]:
    async with dbs.admin.transaction() as conn:
        rows = await conn.execute(
            select(notification_deliveries.c.event_type, notification_deliveries.c.message_id)
            .where(notification_deliveries.c.tenant_id == inv.tenant_id)
            .order_by(notification_deliveries.c.created_at, notification_deliveries.c.message_id)
        )
        return [(r[0], r[1]) for r in rows]


async def started_at(handle: Handle) -> datetime:
    return (await handle.describe()).start_time


def gaps(times: list[datetime]) -> list[timedelta]:
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def assert_gaps(actual: list[timedelta], expected_days: list[float]) -> None:
    """Timers fire at their deadline in workflow time; each step's activities take a few
    milliseconds of (skipped) time, hence the small tolerance."""
    assert len(actual) == len(expected_days), (actual, expected_days)
    for gap, days in zip(actual, expected_days, strict=True):
        expected = timedelta(days=days)
        assert expected <= gap < expected + timedelta(minutes=1), (actual, expected_days)


def key(inv: UnpaidInvoice, attempt: int) -> str:
    return f"pay:{inv.invoice_id}:{attempt}"


async def test_card_update_after_three_failures_recovers_at_once(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
    workers: list[Worker],
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    handle = await start_dunning(workflow_env, settings, inv)
    start = await started_at(handle)

    # Scheduled attempts 2, 3, 4 fall on days 1, 4 and 9; the next one would be day 16.
    await workflow_env.sleep(timedelta(days=9, hours=12))
    state = await wait_for(handle, lambda s: s.attempts == 3 and s.phase == "waiting")
    assert state.last_attempt == 4
    assert stripe_fake.charges_for(inv.stripe_invoice_id) == []

    good_card = stripe_fake.register_card()
    await stripe_fake.attach_payment_method(
        inv.stripe_customer_id, good_card, idempotency_key=f"pm:{good_card}"
    )
    await handle.signal(
        DunningWorkflow.payment_method_updated, PaymentMethodUpdated("evt_pm_1", good_card)
    )
    result = await handle.result()

    assert result.outcome == "recovered"
    assert result.attempts == 4
    assert result.final_invoice_status == "paid"
    charges = stripe_fake.charges_for(inv.stripe_invoice_id)
    assert [(c.payment_method_id, c.amount) for c in charges] == [(good_card, inv.amount_due)]
    assert stripe_fake.keys_for("pay_invoice") == [key(inv, n) for n in range(1, 6)]

    attempts = await attempts_of(dbs, inv)
    assert [(a.idempotency_key, a.outcome) for a in attempts] == [
        (key(inv, 1), "declined"),
        (key(inv, 2), "declined"),
        (key(inv, 3), "declined"),
        (key(inv, 4), "declined"),
        (key(inv, 5), "succeeded"),
    ]
    scheduled = [start] + [a.attempted_at for a in attempts[1:4]]
    assert_gaps(gaps(scheduled), [1, 3, 5])
    # The card update did not wait for day 16.
    assert attempts[4].attempted_at - attempts[3].attempted_at < timedelta(days=1)

    row = await invoice_row(dbs, inv)
    assert row["status"] == "paid"
    assert row["amount_paid"] == inv.amount_due
    assert row["attempt_count"] == 5
    paid_at = attempts[4].attempted_at
    assert paid_at <= row["paid_at"] < paid_at + timedelta(minutes=1)
    assert row["version"] == result.invoice_version > 1

    notes = await notifications_of(dbs, inv)
    failed = [m for t, m in notes if t == "invoice.payment_failed"]
    steps = [m for t, m in notes if t == "dunning.step"]
    assert sorted(failed) == sorted(
        f"invoice.payment_failed:{inv.invoice_id}:{n}" for n in (2, 3, 4)
    )
    assert sorted(steps) == sorted(f"dunning.step:{inv.invoice_id}:{n}" for n in (2, 3, 4, 5))
    assert ("invoice.paid", f"invoice.paid:{inv.invoice_id}") in notes
    # The customer-facing failure notice links to Stripe's hosted page to pay.
    async with dbs.admin.transaction() as conn:
        payloads = (
            await conn.execute(
                select(notification_deliveries.c.payload).where(
                    notification_deliveries.c.event_type == "invoice.payment_failed",
                    notification_deliveries.c.tenant_id == inv.tenant_id,
                )
            )
        ).scalars()
        assert {p["hosted_invoice_url"] for p in payloads} == {inv.hosted_invoice_url}


async def test_exhausted_schedule_marks_the_invoice_uncollectible_and_records_each_attempt_once(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
    workers: list[Worker],
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    # Transient Stripe failures on every kind of call dunning makes: retried under the same key.
    stripe_fake.fail_next("retrieve_invoice", times=2)
    stripe_fake.fail_next("pay_invoice", times=2)
    stripe_fake.fail_next("mark_uncollectible")
    handle = await start_dunning(workflow_env, settings, inv)
    start = await started_at(handle)

    result = await handle.result()

    assert result.outcome == "exhausted"
    assert result.attempts == 4
    assert result.last_attempt == 5
    assert result.final_invoice_status == "uncollectible"
    assert stripe_fake.invoice(inv.stripe_invoice_id).status == "uncollectible"
    assert stripe_fake.charges_for(inv.stripe_invoice_id) == []
    # Replays reuse their attempt's key; no attempt ever used another attempt's key.
    sent = stripe_fake.keys_for("pay_invoice")
    assert sent[:3] == [key(inv, 1), key(inv, 2), key(inv, 2)]
    assert sorted(set(sent)) == sorted(key(inv, n) for n in range(1, 6))
    assert set(stripe_fake.keys_for("mark_uncollectible")) == {f"uncollectible:{inv.invoice_id}"}

    attempts = await attempts_of(dbs, inv)
    assert [(a.attempt, a.outcome) for a in attempts] == [(n, "declined") for n in range(1, 6)]
    assert_gaps(gaps([start] + [a.attempted_at for a in attempts[1:]]), [1, 3, 5, 7])
    assert result.exhausted_at is not None
    assert datetime.fromisoformat(result.exhausted_at) >= attempts[-1].attempted_at

    row = await invoice_row(dbs, inv)
    assert (row["status"], row["attempt_count"], row["amount_paid"], row["paid_at"]) == (
        "uncollectible",
        5,
        0,
        None,
    )
    notes = await notifications_of(dbs, inv)
    assert ("dunning.step", f"dunning.step:{inv.invoice_id}:exhausted") in notes
    assert len([t for t, _ in notes if t == "invoice.payment_failed"]) == 4
    assert not [t for t, _ in notes if t == "invoice.paid"]


async def test_paid_out_of_band_with_a_signal_stops_at_once(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
    workers: list[Worker],
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    handle = await start_dunning(workflow_env, settings, inv)
    await workflow_env.sleep(timedelta(days=1, hours=12))
    await wait_for(handle, lambda s: s.attempts == 1 and s.phase == "waiting")

    stripe_fake.mark_paid_out_of_band(inv.stripe_invoice_id)
    await handle.signal(DunningWorkflow.invoice_paid, InvoicePaid("evt_paid_1"))
    result = await handle.result()

    assert (result.outcome, result.attempts, result.final_invoice_status) == (
        "paid_out_of_band",
        1,
        "paid",
    )
    assert stripe_fake.keys_for("pay_invoice") == [key(inv, 1), key(inv, 2)]
    assert stripe_fake.charges_for(inv.stripe_invoice_id) == []
    attempts = await attempts_of(dbs, inv)
    assert [a.attempt for a in attempts] == [1, 2]
    # It stopped on the signal, not at the day-4 step.
    assert (await handle.describe()).close_time is not None
    row = await invoice_row(dbs, inv)
    assert (row["status"], row["amount_paid"]) == ("paid", inv.amount_due)
    assert row["paid_at"] - attempts[1].attempted_at < timedelta(days=1)
    assert ("invoice.paid", f"invoice.paid:{inv.invoice_id}") in await notifications_of(dbs, inv)


async def test_paid_out_of_band_without_a_signal_is_found_by_the_next_reread(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
    workers: list[Worker],
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    handle = await start_dunning(workflow_env, settings, inv)
    start = await started_at(handle)
    await workflow_env.sleep(timedelta(days=2))
    await wait_for(handle, lambda s: s.attempts == 1 and s.phase == "waiting")

    # Paid on the hosted page; the webhook never made it (or is still in the inbox).
    stripe_fake.mark_paid_out_of_band(inv.stripe_invoice_id)
    result = await handle.result()

    assert (result.outcome, result.attempts) == ("paid_out_of_band", 1)
    assert stripe_fake.keys_for("pay_invoice") == [key(inv, 1), key(inv, 2)]
    assert stripe_fake.charges_for(inv.stripe_invoice_id) == []
    row = await invoice_row(dbs, inv)
    assert row["status"] == "paid"
    # Found at the day-4 step's re-read.
    assert_gaps([row["paid_at"] - start], [4])


async def test_duplicate_signals_apply_once(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
    workers: list[Worker],
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    handle = await start_dunning(workflow_env, settings, inv)
    await workflow_env.sleep(timedelta(days=1, hours=12))
    await wait_for(handle, lambda s: s.attempts == 1 and s.phase == "waiting")

    # The card is still one that declines: each applied signal would cost one more attempt.
    update = PaymentMethodUpdated("evt_pm_1", "pm_whatever")
    await handle.signal(DunningWorkflow.payment_method_updated, update)
    await handle.signal(DunningWorkflow.payment_method_updated, update)
    state = await wait_for(
        handle,
        lambda s: s.ignored_duplicate_signals == 1 and s.attempts == 2 and s.phase == "waiting",
    )
    await handle.signal(DunningWorkflow.payment_method_updated, update)
    state = await wait_for(handle, lambda s: s.ignored_duplicate_signals == 2)
    # Operators find the sequence by invoice, tenant or subscription.
    attributes = (await handle.describe()).typed_search_attributes
    assert attributes.get(search_attributes.INVOICE_ID) == str(inv.invoice_id)
    assert attributes.get(search_attributes.TENANT_ID) == str(inv.tenant_id)
    assert attributes.get(search_attributes.SUBSCRIPTION_ID) == str(inv.subscription_id)
    # ... and see in the list view when the next retry is due, and the step in the details.
    assert state.next_attempt_at is not None
    assert attributes.get(search_attributes.NEXT_RETRY_AT) == datetime.fromisoformat(
        state.next_attempt_at
    )
    details = await current_details(handle)
    # Attempt 1 was the renewal's own collection; 2 and 3 were dunning's (the card update).
    assert details == f"attempt 3 of 6 failed, next retry {state.next_attempt_at}", details
    # Still before the day-4 step: only the one immediate retry happened.
    await workflow_env.sleep(timedelta(days=1))
    state = await handle.query(DunningWorkflow.state)
    assert (state.attempts, state.last_attempt, state.handled_event_ids) == (2, 3, ["evt_pm_1"])

    stripe_fake.mark_paid_out_of_band(inv.stripe_invoice_id)
    await handle.signal(DunningWorkflow.invoice_paid, InvoicePaid("evt_paid_1"))
    await handle.signal(DunningWorkflow.invoice_paid, InvoicePaid("evt_paid_1"))
    result = await handle.result()

    assert (result.outcome, result.attempts) == ("paid_out_of_band", 2)
    assert stripe_fake.keys_for("pay_invoice") == [key(inv, n) for n in (1, 2, 3)]
    assert [a.attempt for a in await attempts_of(dbs, inv)] == [1, 2, 3]
    notes = await notifications_of(dbs, inv)
    assert notes.count(("invoice.paid", f"invoice.paid:{inv.invoice_id}")) == 1


async def test_custom_policy_snapshot_is_honoured_and_a_stale_report_moves_no_deadline(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
    workers: list[Worker],
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    policy = DunningPolicy(retry_after_days=(2, 4), final_action="void", cancel_after_days=3)
    handle = await start_dunning(workflow_env, settings, inv, policy)
    start = await started_at(handle)
    await workflow_env.sleep(timedelta(days=1))
    before = await wait_for(handle, lambda s: s.phase == "waiting")
    assert before.next_attempt_at is not None
    assert_gaps([datetime.fromisoformat(before.next_attempt_at) - start], [2])

    # "Paid", says a premature report; Stripe still says open: nothing changes.
    await handle.signal(DunningWorkflow.invoice_paid, InvoicePaid("evt_stale"))
    after = await wait_for(
        handle, lambda s: s.handled_event_ids == ["evt_stale"] and s.phase == "waiting"
    )
    assert after.next_attempt_at == before.next_attempt_at
    assert after.attempts == 0
    result = await handle.result()

    assert (result.outcome, result.attempts, result.final_invoice_status) == (
        "exhausted",
        2,
        "void",
    )
    attempts = await attempts_of(dbs, inv)
    assert [a.attempt for a in attempts] == [1, 2, 3]
    assert_gaps(gaps([start] + [a.attempted_at for a in attempts[1:]]), [2, 4])
    assert stripe_fake.invoice(inv.stripe_invoice_id).status == "void"
    assert stripe_fake.keys_for("void_invoice") == [f"void:{inv.invoice_id}"]
    assert stripe_fake.keys_for("mark_uncollectible") == []
    assert (await invoice_row(dbs, inv))["status"] == "void"


async def test_an_invoice_voided_elsewhere_stops_the_sequence(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
    workers: list[Worker],
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    handle = await start_dunning(workflow_env, settings, inv)
    await workflow_env.sleep(timedelta(days=2))
    await wait_for(handle, lambda s: s.attempts == 1 and s.phase == "waiting")

    # An operator voided it in the Stripe dashboard.
    await stripe_fake.void_invoice(inv.stripe_invoice_id, idempotency_key="operator-void")
    result = await handle.result()

    assert (result.outcome, result.attempts, result.final_invoice_status) == (
        "voided_elsewhere",
        1,
        "void",
    )
    assert stripe_fake.keys_for("pay_invoice") == [key(inv, 1), key(inv, 2)]
    assert (await invoice_row(dbs, inv))["status"] == "void"


async def test_stripe_unreachable_past_the_key_window_records_an_error_and_moves_on(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
    workers: list[Worker],
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    # Every payment call fails transiently for far longer than the 2-hour retry window.
    stripe_fake.fail_next("pay_invoice", times=1_000)
    handle = await start_dunning(workflow_env, settings, inv)
    await workflow_env.sleep(timedelta(days=1, hours=6))
    await wait_for(handle, lambda s: s.attempts == 1 and s.phase == "waiting")

    attempts = await attempts_of(dbs, inv)
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "declined"), (2, "error")]
    # Only ever under attempt 2's key; the next step will use a new one after a re-read.
    assert set(stripe_fake.keys_for("pay_invoice")[1:]) == {key(inv, 2)}

    stripe_fake.mark_paid_out_of_band(inv.stripe_invoice_id)
    result = await handle.result()
    assert (result.outcome, result.attempts) == ("paid_out_of_band", 1)
    assert stripe_fake.charges_for(inv.stripe_invoice_id) == []


async def test_the_demo_time_scale_compresses_the_schedule(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
    workers: list[Worker],
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    # A day lasts an hour.
    handle = await start_dunning(workflow_env, settings, inv, time_scale=24.0)
    start = await started_at(handle)
    result = await handle.result()

    assert result.outcome == "exhausted"
    attempts = await attempts_of(dbs, inv)
    assert_gaps(
        gaps([start] + [a.attempted_at for a in attempts[1:]]), [h / 24 for h in (1, 3, 5, 7)]
    )


async def test_no_card_on_file_is_an_error_attempt_and_a_new_card_recovers(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    stripe_fake: FakeStripeGateway,
    settings: Settings,
    workers: list[Worker],
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake, card_on_file=False)
    handle = await start_dunning(workflow_env, settings, inv)
    await workflow_env.sleep(timedelta(days=1, hours=12))
    await wait_for(handle, lambda s: s.attempts == 1 and s.phase == "waiting")
    attempts = await attempts_of(dbs, inv)
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "error"), (2, "error")]

    card = stripe_fake.register_card()
    await stripe_fake.attach_payment_method(
        inv.stripe_customer_id, card, idempotency_key=f"pm:{card}"
    )
    await handle.signal(DunningWorkflow.payment_method_updated, PaymentMethodUpdated("evt_1", card))
    result = await handle.result()

    assert (result.outcome, result.last_attempt) == ("recovered", 3)
    assert [c.amount for c in stripe_fake.charges_for(inv.stripe_invoice_id)] == [inv.amount_due]
