"""The app the usage benchmark serves: the product API (real routes, real Postgres roles) plus
one bare route, `/bench/bare`, that touches nothing; `create_without_metrics` serves it with the
Prometheus metrics taken out, to measure what they cost. The bare route exists only here, never in
the product API. No Temporal: the bench tenant never crosses a soft cap, so no grace window is
opened (the client slot stays None)."""

from __future__ import annotations

import os

from fastapi import FastAPI

from adapters.db.session import Database
from adapters.stripe_fake import FakeStripeGateway
from api.app import create_app
from api.server import settle_heap
from billing.catalog import load_catalog
from config import APP_ROLE, WORKER_ROLE, Settings
from services.context import Services


def create() -> FastAPI:
    settings = Settings(database_url=os.environ["BILLING_DATABASE_URL"])
    services = Services(
        settings=settings,
        tenant_db=Database(settings.role_url(APP_ROLE), pool_size=settings.db_pool_size),
        system_db=Database(settings.role_url(WORKER_ROLE), pool_size=settings.db_pool_size),
        temporal=None,  # type: ignore[arg-type]
        stripe=FakeStripeGateway(),
        catalog=load_catalog(settings.catalog_path),
    )
    app = create_app(settings, services=services)

    @app.get("/bench/bare")
    async def bare() -> dict[str, bool]:
        return {"allowed": True}

    settle_heap()  # as `billing api` does before serving
    return app


class _Off:
    """A counter that counts nothing."""

    def labels(self, *_: object) -> _Off:
        return self

    def inc(self, _: float = 1) -> None:
        return None


def create_without_metrics() -> FastAPI:
    """The same app with the engine's Prometheus metrics taken out (no HTTP middleware, no
    usage or quota counters), for the bench's "with and without metrics" comparison only: the
    product always counts."""
    from adapters import metrics

    metrics.HttpMetrics = lambda app: app  # type: ignore[assignment,misc,return-value]
    metrics.count_usage = lambda *_, **__: None  # type: ignore[assignment]
    metrics.QUOTA_CHECKS = metrics.QUOTA_CACHE = _Off()  # type: ignore[assignment]
    return create()
