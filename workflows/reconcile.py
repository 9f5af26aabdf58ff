"""ReconcileUsageWorkflow (`reconcile_usage`): recompute recent daily totals and period counters
from raw usage events, report drift (expected: zero) and repair it.

Run by a Temporal Schedule (`usage-reconciliation`, created idempotently by the worker) and by
hand for a backfill of a past range (`first`/`last`). The work is one activity: the recompute is
a set-based SQL statement, so there is nothing to orchestrate beyond retries.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

from temporalio import workflow
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    import workflows.activity_refs as refs
    from workflows.activity_refs import call
    from workflows.grace import GraceWindowWorkflow, grace_workflow_id
    from workflows.reconcile_io import MissingGraceWindows, ReconcileInput, ReconcileResult
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
        workflow.set_current_details(f"reconciling usage of {first}..{last}")
        result: ReconcileResult = await call(
            refs.RECONCILE_USAGE_DAYS,
            ReconcileInput(days=input.days, first=first, last=last, repair=input.repair),
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=DB_RETRY,
            summary=f"reconcile {first}..{last}",
        )
        opened = await self._open_missing_grace_windows(input)
        result = replace(result, grace_windows_opened=opened)
        workflow.set_current_details(
            f"{first}..{last}: {result.drift_found} drifted aggregate(s), repaired "
            f"{result.repaired}; {opened} missing grace window(s) opened"
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

    async def _open_missing_grace_windows(self, input: ReconcileInput) -> int:
        """A soft-cap crossing is committed before its grace window is started; if Temporal was
        down at that moment the window is missing. Open it now (same id, so never twice)."""
        missing: MissingGraceWindows = await call(
            refs.FIND_MISSING_GRACE_WINDOWS,
            input,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=DB_RETRY,
            summary="find missing grace windows",
        )
        opened = 0
        for window in missing.windows:
            try:
                await workflow.start_child_workflow(
                    GraceWindowWorkflow.run,
                    window,
                    id=grace_workflow_id(window.tenant_id, window.subject, window.period_key),
                    task_queue=input.task_queue or workflow.info().task_queue,
                    # The window must outlive this short reconciliation run.
                    parent_close_policy=ParentClosePolicy.ABANDON,
                    # A window that already ran for this period is never run again.
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    static_summary=f"grace ({window.kind}) for {window.subject}",
                )
                opened += 1
            except WorkflowAlreadyStartedError:
                pass  # started meanwhile (its first projection had not landed yet)
        return opened
