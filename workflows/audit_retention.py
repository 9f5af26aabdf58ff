"""AuditRetentionWorkflow (`audit_retention`, ADR 0017): purge audit rows older than the
retention period, through the one database function allowed to delete them (which records the
purge in the log). Run daily by the `audit-retention` Temporal Schedule the worker creates."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import workflows.activity_refs as refs
    from billing.periods import add_months
    from workflows.activity_refs import call
    from workflows.audit_retention_io import (
        BooksPurgeResult,
        BooksRetentionInput,
        PurgeInput,
        PurgeResult,
        RetentionInput,
    )
    from workflows.retry import DB_RETRY

SCHEDULE_ID = "audit-retention"


@workflow.defn(name="audit_retention")
class AuditRetentionWorkflow:
    @workflow.run
    async def run(self, input: RetentionInput) -> PurgeResult:
        before = add_months(workflow.now(), -input.months)
        workflow.set_current_details(f"purging audit rows before {before.isoformat()}")
        result: PurgeResult = await call(
            refs.PURGE_AUDIT_LOG,
            PurgeInput(before.isoformat(), f"system:{workflow.info().workflow_id}"),
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=DB_RETRY,
            summary=f"purge audit rows older than {input.months} months",
        )
        workflow.set_current_details(f"purged {result.purged} rows before {result.before}")
        return result


BOOKS_SCHEDULE_ID = "erased-books-purge"


@workflow.defn(name="erased_books_purge")
class ErasedBooksPurgeWorkflow:
    """Purge the books an erasure kept (ADR 0018) once the legal retention period has passed
    since the erasure: every row of the tenant, its audit rows and the tenant itself, through
    the one database function allowed to, which records the purge. Run daily by the
    `erased-books-purge` Temporal Schedule the worker creates."""

    @workflow.run
    async def run(self, input: BooksRetentionInput) -> BooksPurgeResult:
        before = add_months(workflow.now(), -input.months)
        workflow.set_current_details(f"purging books of tenants erased before {before}")
        result: BooksPurgeResult = await call(
            refs.PURGE_ERASED_BOOKS,
            PurgeInput(before.isoformat(), f"system:{workflow.info().workflow_id}"),
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=DB_RETRY,
            summary=f"purge books of tenants erased over {input.months} months ago",
        )
        workflow.set_current_details(
            f"purged {result.tenants} erased tenants ({result.rows} rows) erased before "
            f"{result.before}"
        )
        return result
