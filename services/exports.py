"""Tenant data exports (ADR 0016): start one, follow it, find its file."""

from __future__ import annotations

import uuid
from pathlib import Path
from uuid import UUID

from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from adapters.db import tenants as tenant_repo
from adapters.db.audit import record_audit
from adapters.export_files import ExportFiles
from adapters.temporal import start_export
from billing.exports import EXPORT_TABLES, export_workflow_id
from services.context import Services
from services.errors import Conflict, NotFound
from workflows.export import TenantExportWorkflow
from workflows.export_io import ExportInput, ExportProgress


async def request_export(
    services: Services, tenant_id: UUID, actor: str, reason: str | None = None
) -> ExportProgress:
    """Start `export:{tenant}:{export_id}`; its first progress."""
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        if await tenant_repo.get_tenant(conn, tenant_id) is None:
            raise NotFound(f"no tenant {tenant_id}")
    export_id = uuid.uuid4().hex
    handle = await start_export(
        services.temporal,
        ExportInput(
            tenant_id=str(tenant_id),
            export_id=export_id,
            requested_by=actor,
            tables=list(EXPORT_TABLES),
            keep_seconds=services.settings.export_keep_hours * 3600,
            reason=reason,
        ),
        task_queue=services.settings.task_queue,
    )
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        await record_audit(
            conn,
            actor=actor,
            action="tenant.export_requested",
            subject_type="export",
            subject_id=export_id,
            tenant_id=tenant_id,
            before=None,
            after={"workflow_id": handle.id, "keep_hours": services.settings.export_keep_hours},
            details={"reason": reason},
        )
    return await handle.query(TenantExportWorkflow.progress)


def _handle(
    services: Services, tenant_id: UUID, export_id: str
) -> WorkflowHandle[TenantExportWorkflow, ExportProgress]:
    # The workflow id names the tenant: a tenant can only ever address its own exports.
    return services.temporal.get_workflow_handle_for(
        TenantExportWorkflow.run, export_workflow_id(str(tenant_id), export_id)
    )


async def export_progress(services: Services, tenant_id: UUID, export_id: str) -> ExportProgress:
    try:
        return await _handle(services, tenant_id, export_id).query(TenantExportWorkflow.progress)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"no export {export_id}") from error
        raise


async def export_file(services: Services, tenant_id: UUID, export_id: str) -> Path:
    """The finished zip, or why not: 404 unknown, 409 not ready yet, 410-like 404 expired."""
    progress = await export_progress(services, tenant_id, export_id)
    if progress.status == "running":
        raise Conflict("the export is still running; follow its progress")
    path = ExportFiles(services.settings.exports_path()).zip_path(str(tenant_id), export_id)
    if progress.status != "ready" or not path.exists():
        raise NotFound(f"export {export_id} has expired")
    return path
