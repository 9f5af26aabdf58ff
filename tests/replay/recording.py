"""Recording workflow histories for the replay tests, on purpose only: with
`BILLING_RECORD_HISTORIES=1` the tests that call `record` write the history they produced to
tests/replay/histories/{name}.json (then commit it); otherwise `record` does nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle

HISTORIES = Path(__file__).parent / "histories"


async def record(handle: WorkflowHandle[Any, Any], name: str) -> None:
    if os.environ.get("BILLING_RECORD_HISTORIES") != "1":
        return
    history = await handle.fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())
