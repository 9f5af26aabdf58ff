"""Baseline for bench_subscription_year: the cheapest possible year, twelve one-month timers."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow


@workflow.defn(name="bench_twelve_timers")
class TwelveTimers:
    @workflow.run
    async def run(self, months: int) -> int:
        for _ in range(months):
            await workflow.sleep(timedelta(days=30))
        return months
