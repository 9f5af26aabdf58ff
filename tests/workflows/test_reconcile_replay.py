"""Committed histories of `reconcile_usage` replay against the current code, and a fresh one
recorded on every run does too. To replace the committed history after an intended,
compatible change:

    BILLING_RECORD_HISTORIES=1 .venv/bin/pytest tests/workflows/test_reconcile_replay.py
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from billing.grace import SOFT_CAP
from workflows.grace import GraceWindowWorkflow
from workflows.grace_io import GraceInput
from workflows.reconcile import ReconcileUsageWorkflow
from workflows.reconcile_io import MissingGraceWindows, ReconcileInput, ReconcileResult

HISTORIES = Path(__file__).parent / "histories"
NAME = "reconcile_usage_drift_repaired_window_opened"
RECORD = os.environ.get("BILLING_RECORD_HISTORIES") == "1"
TEXTS = {p.stem: p.read_text() for p in sorted(HISTORIES.glob("reconcile_usage_*.json"))}
WINDOW = GraceInput(
    tenant_id=str(uuid.UUID(int=7)),
    kind=SOFT_CAP,
    subject="api_calls",
    period_key="2027-04-01",
    period_start="2027-04-01T00:00:00+00:00",
    duration_seconds=86_400,
    actor="system:reconcile",
)


@activity.defn(name="reconcile_usage_days")
async def reconcile_usage_days(input: ReconcileInput) -> ReconcileResult:
    return ReconcileResult(input.first, input.last, drift_found=2, repaired=2)


@activity.defn(name="find_missing_grace_windows")
async def find_missing_grace_windows(_: ReconcileInput) -> MissingGraceWindows:
    return MissingGraceWindows([WINDOW])


@pytest.mark.parametrize("name", sorted(TEXTS))
async def test_committed_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(name, TEXTS[name])
    await Replayer(workflows=[ReconcileUsageWorkflow, GraceWindowWorkflow]).replay_workflow(history)


def test_a_history_is_committed() -> None:
    assert NAME in TEXTS


async def test_record_history(workflow_env: WorkflowEnvironment) -> None:
    """A backfill that found and repaired drift and opened one missing grace window."""
    queue = f"reconcile-{uuid.uuid4().hex[:8]}"
    async with Worker(
        workflow_env.client,
        task_queue=queue,
        workflows=[ReconcileUsageWorkflow],
        activities=[reconcile_usage_days, find_missing_grace_windows],
    ):
        handle = await workflow_env.client.start_workflow(
            ReconcileUsageWorkflow.run,
            ReconcileInput(first="2027-04-01", last="2027-04-02", task_queue=queue),
            id=f"reconcile-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
        result = await handle.result()
    assert (result.drift_found, result.repaired, result.grace_windows_opened) == (2, 2, 1)
    history = await handle.fetch_history()
    if RECORD:
        (HISTORIES / f"{NAME}.json").write_text(history.to_json())
    await Replayer(workflows=[ReconcileUsageWorkflow]).replay_workflow(
        WorkflowHistory(NAME, history.events)
    )
