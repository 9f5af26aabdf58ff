"""Activities of the tenant data export (`tenant_export`, ADR 0016)."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from temporalio import activity

from activities.errors import domain_errors
from adapters.db import exports as exports_repo
from adapters.db.audit import record_audit
from adapters.db.session import Database
from adapters.export_files import ExportFiles
from workflows.export_io import (
    ExpireExportInput,
    ExportedTable,
    ExportFile,
    ExportTableInput,
    FinishExportInput,
)


class ExportActivities:
    def __init__(self, db: Database, files: ExportFiles) -> None:
        self._db = db
        self._files = files

    @activity.defn(name="export_table")
    @domain_errors
    async def export_table(self, input: ExportTableInput) -> ExportedTable:
        """One table's rows of the tenant, streamed to its JSON-lines file; as the tenant (RLS),
        so no other tenant's row can be read whatever the query says."""
        tenant_id = UUID(input.tenant_id)
        async with self._db.tenant_transaction(tenant_id) as conn:
            rows, digest = await self._files.write_table(
                input.tenant_id,
                input.export_id,
                input.table,
                exports_repo.tenant_rows(conn, input.table, tenant_id),
            )
        return ExportedTable(input.table, rows, digest)

    @activity.defn(name="finish_export")
    @domain_errors
    async def finish_export(self, input: FinishExportInput) -> ExportFile:
        """The zip with a manifest (counts and checksums per table), and the audit row."""
        manifest = {
            "tenant_id": input.tenant_id,
            "export_id": input.export_id,
            "created_at": datetime.now(UTC).isoformat(),
            "expires_at": input.expires_at,
            "tables": {t.table: {"rows": t.rows, "sha256": t.sha256} for t in input.tables},
        }
        path, size, digest = self._files.assemble(input.tenant_id, input.export_id, manifest)
        async with self._db.tenant_transaction(UUID(input.tenant_id)) as conn:
            await record_audit(
                conn,
                actor=input.requested_by,
                action="tenant.exported",
                subject_type="export",
                subject_id=input.export_id,
                tenant_id=UUID(input.tenant_id),
                before=None,
                after={
                    "rows": sum(t.rows for t in input.tables),
                    "sha256": digest,
                    "expires_at": input.expires_at,
                },
                details={"reason": input.reason},
            )
        return ExportFile(str(path), size, digest)

    @activity.defn(name="expire_export")
    @domain_errors
    async def expire_export(self, input: ExpireExportInput) -> ExpireExportInput:
        self._files.remove(input.tenant_id, input.export_id)
        return input
