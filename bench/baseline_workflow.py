"""Baselines for bench_subscription_year: the cheapest possible year (twelve one-month timers),
and the cheapest way to run a given number of activities."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow


@workflow.defn(name="bench_twelve_timers")
class TwelveTimers:
    @workflow.run
    async def run(self, months: int) -> int:
        for _ in range(months):
            await workflow.sleep(timedelta(days=30))
        return months


@activity.defn(name="bench_noop")
async def noop() -> None:
    """Does nothing: the baseline's unit of Temporal cost."""


@workflow.defn(name="bench_noop_activities")
class NoopActivities:
    """The per-renewal cost baseline (issue 11): the same number of activities as a
    subscription year ran, one after the other, doing nothing."""

    @workflow.run
    async def run(self, activities: int) -> int:
        for _ in range(activities):
            await workflow.execute_activity(noop, start_to_close_timeout=timedelta(seconds=30))
        return activities
