"""Running a benchmark so that `kill <pid>` (SIGTERM) stops it as Ctrl-C does: the main task is
cancelled, and the bench's `finally` blocks stop the servers it started, by their pids. Without
this, SIGTERM ended the interpreter at once and left the embedded PostgreSQL, the Temporal dev
server and the API running."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, with SIGTERM cancelling `main` (Ctrl-C already does)."""

    async def stoppable() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await main
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    return asyncio.run(stoppable())
