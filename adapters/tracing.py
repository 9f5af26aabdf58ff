"""OpenTelemetry traces across the Temporal boundary (ADR 0011), off unless
`BILLING_OTLP_ENDPOINT` is set.

One trace follows an API request into the workflow update it sends, the update's handling in
the workflow and the activities the handler runs; and a Stripe webhook into the stripe_event
workflow and the signal that workflow sends on to the subscription. The pieces:

- FastAPI's instrumentation opens the request's span (`instrument_app`);
- temporalio's `OpenTelemetryPlugin` on the Temporal client (so on every worker built from
  it) carries the span context in Temporal headers and parents each handler on its caller:
  client calls, workflow runs, signal and update handlers, activities, signals sent from a
  workflow. Its provider is replay-safe (`create_tracer_provider`): nothing is exported while a
  workflow replays, and span ids inside workflows are deterministic;
- asyncpg and httpx instrumentations add the database statements and outgoing HTTP calls.

The plugin reads the global tracer provider, so a process installs its `Tracing` once
(`install`), from its composition root.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import opentelemetry.trace
from fastapi import FastAPI
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from temporalio.client import Plugin
from temporalio.contrib.opentelemetry import (
    OpenTelemetryPlugin,
    ReplaySafeTracerProvider,
    create_tracer_provider,
)

from config import Settings

__all__ = ["Tracing"]


@dataclass
class Tracing:
    provider: ReplaySafeTracerProvider

    @classmethod
    def from_settings(cls, settings: Settings, service: str) -> Tracing | None:
        """Spans batched to the OTLP/HTTP endpoint `settings.otlp_endpoint`; None when it is
        unset (tracing off: nothing is installed, nothing exported)."""
        if not settings.otlp_endpoint:
            return None
        # Imported here: the exporter pulls in protobuf, which a process with tracing off
        # never needs.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return cls.with_exporter(OTLPSpanExporter(endpoint=settings.otlp_endpoint), service)

    @classmethod
    def with_exporter(cls, exporter: SpanExporter, service: str, *, batch: bool = True) -> Tracing:
        provider = create_tracer_provider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(
            BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        )
        return cls(provider)

    def install(self) -> None:
        """Make this the process's tracer provider, and trace asyncpg statements and httpx
        calls (notification deliveries, the Stripe SDK's client). Once per process."""
        opentelemetry.trace.set_tracer_provider(self.provider)
        quiet_evicted_workflow_detach()
        AsyncPGInstrumentor().instrument(tracer_provider=self.provider)  # type: ignore[no-untyped-call]
        HTTPXClientInstrumentor().instrument(tracer_provider=self.provider)

    def temporal_plugins(self) -> Sequence[Plugin]:
        """For the Temporal client; workers built from that client take them too."""
        return [OpenTelemetryPlugin(add_temporal_spans=True)]

    def instrument_app(self, app: FastAPI) -> None:
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=self.provider, excluded_urls="healthz,readyz"
        )

    def shutdown(self) -> None:
        """Export what is buffered, then stop."""
        self.provider.shutdown()


def quiet_evicted_workflow_detach() -> None:
    logger = logging.getLogger("opentelemetry.context")
    if _evicted_workflow_detach not in logger.filters:
        logger.addFilter(_evicted_workflow_detach)


def _evicted_workflow_detach(record: logging.LogRecord) -> bool:
    """Drop OpenTelemetry's "Failed to detach context" error: a workflow evicted from the
    worker's cache (at shutdown, or when the cache is full) is finalised by GeneratorExit in
    another context, where the token the plugin attached cannot be reset. The span is already
    handled and nothing is lost; the SDK's own tracker is temporalio/sdk-python#441."""
    return record.getMessage() != "Failed to detach context"
