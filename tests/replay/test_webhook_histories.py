"""Committed histories of the webhook workflows replay against today's code: a change that
would break running `stripe_event` / `notification_delivery` workflows fails here (then use
`workflow.patched`). Re-record with tests/webhooks/record_histories.py, on purpose only."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.notification_delivery import NotificationDeliveryWorkflow
from workflows.stripe_event import StripeEventWorkflow

HISTORIES = Path(__file__).parent / "histories"


@pytest.mark.parametrize(
    "name",
    ["stripe_event_processed", "stripe_event_dead_lettered", "notification_delivery_retried"],
)
async def test_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(
        f"recorded-{name}", (HISTORIES / f"{name}.json").read_text()
    )
    replayer = Replayer(workflows=[StripeEventWorkflow, NotificationDeliveryWorkflow])
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
