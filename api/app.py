"""FastAPI app factory. The lifespan is one of the two composition roots (the worker is the
other): it builds the database engines, the Temporal client and the Stripe gateway once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

from fastapi import FastAPI

from adapters import logs, metrics
from adapters.db.quota_cache import QuotaChangeListener, QuotaRowCache
from adapters.db.session import Database
from adapters.stripe_sdk import build_gateway
from adapters.temporal import connect_temporal
from adapters.tracing import Tracing
from api.errors import install_error_handlers
from api.routes import (
    account,
    audit,
    credit_notes,
    exports,
    grace_operator,
    health,
    invoices,
    notification_endpoints,
    operator,
    operator_charges,
    operator_coupons,
    operator_credit_notes,
    operator_erasure,
    operator_rate_limits,
    operator_reports,
    operator_webhooks,
    payment_methods,
    subscription,
    usage,
    usage_operator,
    webhooks,
)
from billing.catalog import load_catalog
from billing.payments import StripeGateway
from config import APP_ROLE, WORKER_ROLE, WORKER_SCOPED_ROLE, Settings
from services.context import Services


async def build_services(settings: Settings, tracing: Tracing | None = None) -> Services:
    return Services(
        settings=settings,
        tenant_db=Database(settings.role_url(APP_ROLE), pool_size=settings.db_pool_size),
        system_db=Database(
            settings.role_url(WORKER_ROLE),
            pool_size=max(2, settings.db_pool_size // 2),
            scoped_role=WORKER_SCOPED_ROLE,
        ),
        temporal=await connect_temporal(
            settings,
            lazy=True,
            sdk_metrics_port=settings.api_sdk_metrics_port,
            plugins=tracing.temporal_plugins() if tracing else (),
        ),
        stripe=cast(StripeGateway, metrics.MeteredGateway(build_gateway(settings))),
        catalog=load_catalog(settings.catalog_path),
    )


@asynccontextmanager
async def quota_cache_listening(services: Services) -> AsyncIterator[None]:
    """Keep the quota cache coherent while the app serves (ADR 0003, "The quota cache"): a task
    holds a LISTEN connection; until it is up, and whenever it is down, checks read Postgres."""
    ttl = services.settings.quota_cache_seconds
    if ttl <= 0:
        yield
        return
    services.quota_cache = QuotaRowCache(ttl_seconds=ttl)
    listener = QuotaChangeListener(services.tenant_db.asyncpg_dsn(), services.quota_cache)
    services.extras["quota_listener"] = listener
    task = asyncio.create_task(listener.run(), name="quota-cache-listener")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def create_app(
    settings: Settings, services: Services | None = None, tracing: Tracing | None = None
) -> FastAPI:
    """`services` lets tests hand in their own (fakes, test databases); they then own closing.
    `tracing`: the process's tracer provider when traces are on (built from the settings when
    the app builds its own services); tests hand in one with an in-memory exporter."""
    if services is None and tracing is None:
        tracing = Tracing.from_settings(settings, "billing-api")
        if tracing is not None:
            tracing.install()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services is not None:
            app.state.services = services
            async with quota_cache_listening(services):
                yield
            return
        built = await build_services(settings, tracing)
        app.state.services = built
        stop_metrics = (
            metrics.serve(settings.metrics_host, settings.api_metrics_port)
            if settings.api_metrics_port
            else None
        )
        try:
            async with quota_cache_listening(built):
                yield
        finally:
            if stop_metrics is not None:
                stop_metrics()
            queue = built.extras.get("webhook_dispatch")
            if queue is not None:  # what is still queued, the re-dispatcher starts
                await queue.close()
            await built.tenant_db.dispose()
            await built.system_db.dispose()
            if tracing is not None:
                tracing.shutdown()

    app = FastAPI(
        title="Billing engine",
        version="0.1.0",
        description="Workflow-orchestrated billing: subscriptions, usage, invoices, webhooks.",
        lifespan=lifespan,
    )
    if services is not None:
        # Set eagerly too: in-process test transports do not run the lifespan.
        app.state.services = services
    install_error_handlers(app)
    app.add_middleware(metrics.HttpMetrics)
    app.add_middleware(logs.RequestIds)
    if tracing is not None:
        tracing.instrument_app(app)
    # Routes are matched in this order, one by one (a quarter of a webhook's CPU went to
    # matching when its router came tenth): the high-volume ones first.
    app.include_router(webhooks.router)
    app.include_router(usage.router)
    app.include_router(health.router)
    app.include_router(operator.router)
    app.include_router(subscription.router)
    app.include_router(invoices.router)
    app.include_router(payment_methods.router)
    app.include_router(account.router)
    app.include_router(usage_operator.router)
    app.include_router(grace_operator.router)
    app.include_router(operator_webhooks.router)
    app.include_router(operator_reports.router)
    app.include_router(operator_rate_limits.router)
    app.include_router(operator_erasure.router)
    app.include_router(exports.router)
    app.include_router(audit.router)
    app.include_router(notification_endpoints.router)
    app.include_router(credit_notes.router)
    app.include_router(operator_credit_notes.router)
    app.include_router(operator_charges.router)
    app.include_router(operator_coupons.router)
    return app
