"""`billing api`: serve the app with uvicorn (uvloop and httptools when installed, which the
package's dependencies do on Linux and macOS)."""

from __future__ import annotations

import gc

import uvicorn

from adapters import logs
from api.app import create_app
from config import Settings

# Young-generation collections after this many container allocations instead of CPython's 700.
# A 1,000-event batch allocates tens of thousands of short-lived objects (parsed events,
# metadata dicts, result rows), nearly all freed by reference counting; at 700 the collector
# ran dozens of times per batch and took a third of the API process's CPU (py-spy, bench/
# bench_usage.py). Cyclic garbage still gets collected, only later.
GC_YOUNG_THRESHOLD = 100_000


def settle_heap() -> None:
    """Tune the cyclic garbage collector for a long-running API process, after start-up.

    Everything alive now (modules, the app, its routes and schemas) lives as long as the
    process: `gc.freeze()` moves it out of the collector's sight, so full collections stop
    walking it again (~6 ms of a ~16 ms batch before). Then the young-generation threshold is
    raised (see GC_YOUNG_THRESHOLD). Objects created afterwards are collected as usual."""
    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def serve(settings: Settings) -> None:
    logs.configure(settings.log_format)
    app = create_app(settings)
    settle_heap()
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        access_log=False,
    )
