"""Tenant data exports (ADR 0016): a tenant asks for its own (`billing.read`), an operator for
any tenant's; both follow the progress and download the zip until it expires."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Path, Query, status
from fastapi.responses import FileResponse

from api.auth import AuthFirstRoute, OperatorPrincipal, ReadPrincipal, ServicesDep
from api.errors import error_responses
from api.schemas import ExportOut
from services import exports

router = APIRouter(route_class=AuthFirstRoute, prefix="/api/billing", tags=["exports"])

# Export ids are the engine's (32 hex digits); anything else is not one.
ExportId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]

_DOWNLOAD = {
    200: {"content": {"application/zip": {}}, "description": "the export: JSON lines per table"},
    **error_responses(401, 403, 404, 409, 503),
}


def _zip(tenant_id: UUID, export_id: str, path: object) -> FileResponse:
    return FileResponse(
        str(path), media_type="application/zip", filename=f"export-{tenant_id}-{export_id}.zip"
    )


@router.post(
    "/exports",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ExportOut,
    responses=error_responses(401, 403, 404, 503),
)
async def request_own_export(principal: ReadPrincipal, services: ServicesDep) -> ExportOut:
    """Everything the engine holds about the calling tenant, as a zip of JSON-lines files with
    a manifest; follow `GET /exports/{id}`, then download it."""
    progress = await exports.request_export(services, principal.require_tenant(), principal.actor)
    return ExportOut.of(progress)


@router.get(
    "/exports/{export_id}", response_model=ExportOut, responses=error_responses(401, 403, 404, 503)
)
async def own_export(
    export_id: ExportId, principal: ReadPrincipal, services: ServicesDep
) -> ExportOut:
    return ExportOut.of(
        await exports.export_progress(services, principal.require_tenant(), export_id)
    )


@router.get("/exports/{export_id}/download", response_class=FileResponse, responses=_DOWNLOAD)
async def download_own_export(
    export_id: ExportId, principal: ReadPrincipal, services: ServicesDep
) -> FileResponse:
    tenant_id = principal.require_tenant()
    return _zip(tenant_id, export_id, await exports.export_file(services, tenant_id, export_id))


@router.post(
    "/operator/tenants/{tenant_id}/exports",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ExportOut,
    responses=error_responses(401, 403, 404, 503),
)
async def request_tenant_export(
    tenant_id: UUID,
    principal: OperatorPrincipal,
    services: ServicesDep,
    reason: str | None = Query(None, max_length=500, description="kept in the audit row"),
) -> ExportOut:
    return ExportOut.of(await exports.request_export(services, tenant_id, principal.actor, reason))


@router.get(
    "/operator/tenants/{tenant_id}/exports/{export_id}",
    response_model=ExportOut,
    responses=error_responses(401, 403, 404, 503),
)
async def tenant_export(
    tenant_id: UUID, export_id: ExportId, _: OperatorPrincipal, services: ServicesDep
) -> ExportOut:
    return ExportOut.of(await exports.export_progress(services, tenant_id, export_id))


@router.get(
    "/operator/tenants/{tenant_id}/exports/{export_id}/download",
    response_class=FileResponse,
    responses=_DOWNLOAD,
)
async def download_tenant_export(
    tenant_id: UUID, export_id: ExportId, _: OperatorPrincipal, services: ServicesDep
) -> FileResponse:
    return _zip(tenant_id, export_id, await exports.export_file(services, tenant_id, export_id))
