"""Replay committed histories of the dunning workflow: a change to its code that would break
running sequences fails here (then guard it with `workflow.patched`, or record new histories
only if no such workflow can still be running).

The histories were recorded from the time-skipping tests of the same names in test_dunning.py
(`(await handle.fetch_history()).to_json()`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer

from workflows.dunning import DunningWorkflow
from workflows.dunning_io import DunningResult

HISTORIES = Path(__file__).parent / "histories"


@pytest.mark.parametrize(
    "name",
    ["dunning_recovered_after_card_update", "dunning_exhausted_with_transient_failures"],
)
async def test_committed_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(f"dunning:{name}", (HISTORIES / f"{name}.json").read_text())
    result = await Replayer(workflows=[DunningWorkflow]).replay_workflow(history)
    assert result.replay_failure is None


@pytest.mark.parametrize(
    ("name", "outcome"),
    [
        ("dunning_recovered_after_card_update", "recovered"),
        ("dunning_exhausted_with_transient_failures", "exhausted"),
    ],
)
def test_the_histories_run_to_the_outcome_they_are_named_after(name: str, outcome: str) -> None:
    # A replay of a truncated history would prove little: each one runs to its end.
    history = WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text())
    completed = history.events[-1].workflow_execution_completed_event_attributes
    [result] = DataConverter.default.payload_converter.from_payloads(
        list(completed.result.payloads), [DunningResult]
    )
    assert result.outcome == outcome
