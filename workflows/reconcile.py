"""ReconcileUsageWorkflow (`reconcile_usage`): recompute recent daily totals and period counters
from raw usage events, report drift (expected: zero) and repair it.

Run by a Temporal Schedule (`usage-reconciliation`, created idempotently by the worker) and by
hand for a backfill of a past range (`first`/`last`). The work is one activity: the recompute is
a set-based SQL statement, so there is nothing to orchestrate beyond retries.
"""

from __future__ import annotations

from datetime import date, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.grace_io import ReconcileInput, ReconcileResult
    from workflows.retry import DB_RETRY

SCHEDULE_ID = "usage-reconciliation"


@workflow.defn(name="reconcile_usage")
class ReconcileUsageWorkflow:
    @workflow.run
    async def run(self, input: ReconcileInput) -> ReconcileResult:
        if input.first:
            first, last = input.first, input.last or input.first
        else:
            today = workflow.now().date()
            first = (today - timedelta(days=input.days - 1)).isoformat()
            last = today.isoformat()
        date.fromisoformat(first), date.fromisoformat(last)  # fail fast on a malformed range
        result: ReconcileResult = await workflow.execute_activity(
            "reconcile_usage_days",
            ReconcileInput(days=input.days, first=first, last=last, repair=input.repair),
            result_type=ReconcileResult,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=DB_RETRY,
        )
        if result.drift_found:
            workflow.logger.warning(
                "usage drift: %d aggregates differed from raw events in %s..%s (repaired %d)",
                result.drift_found,
                first,
                last,
                result.repaired,
            )
        return result
