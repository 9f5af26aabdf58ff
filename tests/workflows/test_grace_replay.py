"""Committed histories of `grace_window` replay against the current code: a change that would
break running windows (command order, names, payload shapes) fails here first (then use
`workflow.patched`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from workflows.grace import GraceWindowWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("grace_window_*.json"))
# Read at collection time: the files are small, and the test itself stays free of blocking I/O.
TEXTS = {p.stem: p.read_text() for p in HISTORIES}


@pytest.mark.parametrize("name", sorted(TEXTS))
async def test_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(name, TEXTS[name])
    await Replayer(workflows=[GraceWindowWorkflow]).replay_workflow(history)


def test_histories_are_committed() -> None:
    assert len(HISTORIES) >= 2
