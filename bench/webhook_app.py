"""The API as `billing api` builds it (settings from the environment), plus one bare route as
the benchmark's baseline on the same server. Served by bench_webhooks.py with uvicorn --factory."""

from __future__ import annotations

from fastapi import FastAPI, Request

from api.app import create_app
from api.server import settle_heap
from config import load_settings


def build() -> FastAPI:
    app = create_app(load_settings())

    @app.post("/bench/bare")
    async def bare(request: Request) -> dict[str, bool]:
        # Reads the body like the webhook route does, and does nothing else.
        await request.body()
        return {"received": True}

    # Matched first, as the webhook route is (routes are tried in order): the baseline pays
    # no route matching the webhook does not.
    app.router.routes.insert(0, app.router.routes.pop())

    settle_heap()  # as `billing api` does before serving
    return app
