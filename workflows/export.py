"""TenantExportWorkflow (`export:{tenant}:{export_id}`, ADR 0016): everything the engine holds
about a tenant, one JSON-lines file per table, zipped with a manifest; downloadable until it
expires, then deleted. Progress is the `progress` query."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import workflows.activity_refs as refs
    from workflows.activity_refs import call
    from workflows.export_io import (
        ExpireExportInput,
        ExportedTable,
        ExportFile,
        ExportInput,
        ExportProgress,
        ExportTableInput,
        FinishExportInput,
    )
    from workflows.retry import DB_RETRY

# A large tenant's usage events take a while to stream; retried from scratch if a worker dies.
TABLE_TIMEOUT = timedelta(minutes=30)


@workflow.defn(name="tenant_export")
class TenantExportWorkflow:
    @workflow.init
    def __init__(self, input: ExportInput) -> None:
        self._progress = ExportProgress(
            export_id=input.export_id,
            status="running",
            tables_total=len(input.tables),
            tables_done=0,
            rows=0,
        )

    @workflow.query(name="progress")
    def progress(self) -> ExportProgress:
        return self._progress

    def _update(self, **changes: object) -> None:
        self._progress = replace(self._progress, **changes)  # type: ignore[arg-type]
        p = self._progress
        workflow.set_current_details(
            f"{p.status}: {p.tables_done} of {p.tables_total} tables, {p.rows} rows"
            + (f", now {p.current_table}" if p.current_table else "")
        )

    @workflow.run
    async def run(self, input: ExportInput) -> ExportProgress:
        done: list[ExportedTable] = []
        for table in input.tables:
            self._update(current_table=table)
            exported: ExportedTable = await call(
                refs.EXPORT_TABLE,
                ExportTableInput(input.tenant_id, input.export_id, table),
                start_to_close_timeout=TABLE_TIMEOUT,
                retry_policy=DB_RETRY,
                summary=f"export {table}",
            )
            done.append(exported)
            self._update(
                tables_done=len(done), rows=self._progress.rows + exported.rows, tables=list(done)
            )
        expires_at = workflow.now() + timedelta(seconds=input.keep_seconds)
        file: ExportFile = await call(
            refs.FINISH_EXPORT,
            FinishExportInput(
                input.tenant_id,
                input.export_id,
                input.requested_by,
                done,
                expires_at.isoformat(),
                input.reason,
            ),
            start_to_close_timeout=TABLE_TIMEOUT,
            retry_policy=DB_RETRY,
            summary="zip with manifest",
        )
        self._update(
            status="ready",
            current_table=None,
            expires_at=expires_at.isoformat(),
            sha256=file.sha256,
        )
        await workflow.sleep(
            timedelta(seconds=input.keep_seconds), summary="until the export expires"
        )
        await call(
            refs.EXPIRE_EXPORT,
            ExpireExportInput(input.tenant_id, input.export_id),
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=DB_RETRY,
            summary="delete the expired export",
        )
        self._update(status="expired")
        return self._progress
