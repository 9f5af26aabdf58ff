"""An ASGI app served by uvicorn on 127.0.0.1 inside the test's event loop, for peers that need
a real socket (localstripe's webhooks, outbound notification receivers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from tests.harness import free_port


@asynccontextmanager
async def serve_on_loopback(app: Any) -> AsyncIterator[str]:
    """Yield the base URL once the server accepts connections; stop it on exit."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    # The app's own lifespan is the test's business (services are handed in).
    server.config.lifespan = "off"
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped during start-up")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
