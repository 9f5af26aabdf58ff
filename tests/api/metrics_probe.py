"""A workflow that does nothing, in a module that imports nothing else (the sandbox re-imports a
workflow's module): runs one workflow task for the SDK-metrics test."""

from __future__ import annotations

from temporalio import workflow


@workflow.defn(name="metrics_probe")
class MetricsProbe:
    @workflow.run
    async def run(self) -> str:
        return "ok"
