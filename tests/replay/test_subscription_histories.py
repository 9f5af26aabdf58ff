"""Committed histories of SubscriptionWorkflow scenarios replay against the current code.

A change that would break running workflows (a reordered activity, a renamed handler, a new
command without `workflow.patched`) fails here. The scenarios are also recorded afresh on every
run and replayed at once; to replace the committed histories after an intended, compatible
change:

    BILLING_RECORD_HISTORIES=1 .venv/bin/pytest \
        tests/replay/test_subscription_histories.py -k record
"""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from adapters.stripe_fake import FakeStripeGateway
from billing.dunning import DunningPolicy
from config import Settings
from tests.factories.subscription_workflows import make_subscription, plan_snapshot
from tests.harness import Databases
from tests.workflows.helpers import Handle, start, to_next_boundary, until
from workflows.subscription import SubscriptionWorkflow
from workflows.subscription_io import (
    CancelRequest,
    ChangePlanRequest,
    LifecycleRequest,
    PauseRequest,
    SetPaymentMethodRequest,
    StripeEventSignal,
)

HISTORIES = Path(__file__).parent / "histories" / "subscription"
RECORD = os.environ.get("BILLING_RECORD_HISTORIES") == "1"


def _histories() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


# Read at collection time (plain I/O stays out of the event loop).
_COMMITTED = [(p.stem, p.read_text()) for p in _histories()]


@pytest.mark.parametrize(("name", "text"), _COMMITTED, ids=[name for name, _ in _COMMITTED])
async def test_committed_history_replays(name: str, text: str) -> None:
    history = WorkflowHistory.from_json(name, text)
    result = await Replayer(workflows=[SubscriptionWorkflow]).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert result.replay_failure is None, result.replay_failure


def test_histories_are_committed() -> None:
    assert len(_histories()) >= 7


async def _save(handle: Handle, name: str, *, run_id: str | None = None) -> WorkflowHistory:
    """The run's history, written over the committed one with BILLING_RECORD_HISTORIES=1."""
    client = handle._client
    target = handle if run_id is None else client.get_workflow_handle(handle.id, run_id=run_id)
    history = await target.fetch_history()
    if RECORD:
        (HISTORIES / f"{name}.json").write_text(history.to_json())
    return WorkflowHistory(name, history.events)


async def _replays(history: WorkflowHistory) -> None:
    result = await Replayer(workflows=[SubscriptionWorkflow]).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert result.replay_failure is None, (history.workflow_id, result.replay_failure)


@pytest.mark.usefixtures("workers")
async def test_record_histories(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    settings: Settings,
    task_queues: tuple[str, str],
    stripe_fake: FakeStripeGateway,
) -> None:
    """Runs every scenario, replays each fresh history, and (with BILLING_RECORD_HISTORIES=1)
    writes them over the committed ones."""
    recorded: list[WorkflowHistory] = []

    async def _keep(handle: Handle, name: str, *, run_id: str | None = None) -> None:
        recorded.append(await _save(handle, name, run_id=run_id))

    start_at = "2027-04-01T00:00:00+00:00"

    # 1. Trial, conversion: the first run (ends with continue-as-new at trial end).
    sub = await make_subscription(
        dbs, task_queues=task_queues, trial_days=14, business_start=start_at
    )
    handle = await start(workflow_env, sub, settings.task_queue)
    first_run = handle.first_execution_run_id
    await until(workflow_env, handle, lambda s: s.status == "trialing")
    await to_next_boundary(workflow_env, handle)
    await until(workflow_env, handle, lambda s: not s.open_invoices)
    await _keep(handle, "trial_converts", run_id=first_run)

    # 2. Upgrade mid-period, then a scheduled downgrade, in one run; the renewal ends it.
    run_id = (await handle.describe()).run_id
    await workflow_env.sleep(timedelta(days=10))
    await handle.execute_update(
        SubscriptionWorkflow.change_plan,
        ChangePlanRequest(await plan_snapshot(dbs, "enterprise"), "tests"),
    )
    await handle.execute_update(
        SubscriptionWorkflow.change_plan,
        ChangePlanRequest(await plan_snapshot(dbs, "standard"), "tests"),
    )
    await to_next_boundary(workflow_env, handle)
    await until(workflow_env, handle, lambda s: not s.open_invoices)
    await _keep(handle, "upgrade_then_scheduled_downgrade", run_id=run_id)

    # 3. Pause, resume, cancel at period end, undo, cancel now (final invoice).
    current = handle._client.get_workflow_handle(handle.id)
    run_id = (await current.describe()).run_id
    await current.execute_update(SubscriptionWorkflow.pause, PauseRequest("tests"))
    await current.execute_update(SubscriptionWorkflow.resume, LifecycleRequest("tests"))
    await until(workflow_env, current, lambda s: s.status == "active")
    await current.execute_update(SubscriptionWorkflow.cancel, CancelRequest("tests"))
    await current.execute_update(SubscriptionWorkflow.undo_cancel, LifecycleRequest("tests"))
    await current.execute_update(
        SubscriptionWorkflow.cancel, CancelRequest("tests", at_period_end=False)
    )
    await current.result()
    await _keep(current, "pause_resume_cancel", run_id=run_id)

    # 4. A declined first payment, then the paid event (twice) and a stale failure.
    sub = await make_subscription(
        dbs, task_queues=task_queues, payment_method_id="pm_card_chargeCustomerFail"
    )
    handle = await start(workflow_env, sub, settings.task_queue)
    st = await until(workflow_env, handle, lambda s: s.status == "past_due")
    invoice = st.open_invoices[0]
    assert invoice.stripe_invoice_id is not None
    stripe_fake.mark_paid_out_of_band(invoice.stripe_invoice_id)
    paid = StripeEventSignal("evt_1", "invoice.paid", invoice_id=invoice.invoice_id)
    await handle.signal(SubscriptionWorkflow.stripe_event, paid)
    await handle.signal(SubscriptionWorkflow.stripe_event, paid)
    await handle.signal(
        SubscriptionWorkflow.stripe_event,
        StripeEventSignal("evt_0", "invoice.payment_failed", invoice_id=invoice.invoice_id),
    )
    await until(workflow_env, handle, lambda s: s.status == "active")
    await _keep(handle, "past_due_then_paid")

    # 5. Trial ends without a payment method: cancel policy, the workflow completes.
    sub = await make_subscription(
        dbs,
        task_queues=task_queues,
        trial_days=3,
        payment_method_id=None,
        trial_end_policy="cancel",
    )
    handle = await start(workflow_env, sub, settings.task_queue)
    await handle.result()
    await _keep(handle, "trial_expires_canceled")

    assert [h.workflow_id for h in recorded] == [
        "trial_converts",
        "upgrade_then_scheduled_downgrade",
        "pause_resume_cancel",
        "past_due_then_paid",
        "trial_expires_canceled",
    ]
    for history in recorded:
        await _replays(history)


# Histories of the dunning wiring (ADR 0005, "Parent wiring"). Separate tests: each needs a
# fresh time-skipping server (parent/child pairs with signals stop its time skipping), and
# regenerating them leaves the histories above, recorded before the wiring, untouched:
#
#     BILLING_RECORD_HISTORIES=1 .venv/bin/pytest \
#         tests/replay/test_subscription_histories.py -k record_dunning


@pytest.mark.usefixtures("workers")
async def test_record_dunning_recovered_history(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    settings: Settings,
    task_queues: tuple[str, str],
) -> None:
    # A declined first payment starts dunning; a new card (update) is forwarded to the child,
    # which recovers the invoice and tells the parent.
    sub = await make_subscription(
        dbs, task_queues=task_queues, payment_method_id="pm_card_chargeCustomerFail"
    )
    handle = await start(workflow_env, sub, settings.task_queue)
    await until(workflow_env, handle, lambda s: bool(s.dunning_invoice_ids))
    await workflow_env.sleep(timedelta(days=1, hours=1))
    await handle.execute_update(
        SubscriptionWorkflow.set_payment_method, SetPaymentMethodRequest("pm_card_visa", "tests")
    )
    await until(workflow_env, handle, lambda s: s.status == "active")
    await _replays(await _save(handle, "dunning_recovered_after_card_update"))


@pytest.mark.usefixtures("workers")
async def test_record_dunning_exhausted_history(
    workflow_env: WorkflowEnvironment,
    dbs: Databases,
    settings: Settings,
    task_queues: tuple[str, str],
) -> None:
    # Every attempt declines: exhausted, then canceled for non-payment after the delay.
    sub = await make_subscription(
        dbs, task_queues=task_queues, payment_method_id="pm_card_chargeCustomerFail"
    )
    policy = DunningPolicy(retry_after_days=(1,), cancel_after_days=2)
    sub = dataclasses.replace(
        sub, input=dataclasses.replace(sub.input, dunning_policy=policy.to_dict())
    )
    handle = await start(workflow_env, sub, settings.task_queue)
    await until(workflow_env, handle, lambda s: bool(s.dunning_invoice_ids))
    await workflow_env.sleep(timedelta(days=1, hours=1))
    await until(workflow_env, handle, lambda s: s.cancel_due_at is not None)
    await workflow_env.sleep(timedelta(days=2, hours=1))
    assert (await handle.result()).status == "canceled"
    await _replays(await _save(handle, "dunning_exhausted_canceled"))
