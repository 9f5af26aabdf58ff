"""The audit trail (ADR 0017): operators read and export every tenant's rows with filters; a
tenant reads and exports its own."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from adapters.db.audit import AuditFilter
from api.auth import AuthFirstRoute, OperatorPrincipal, ReadPrincipal, ServicesDep
from api.errors import error_responses
from api.schemas import AuditEntryOut, AuditPage
from services import audit

router = APIRouter(route_class=AuthFirstRoute, prefix="/api/billing", tags=["audit"])

MEDIA = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
_EXPORT = {
    200: {"content": {m: {} for m in MEDIA.values()}, "description": "the rows, oldest first"},
    **error_responses(401, 403, 422),
}


def _filter(
    tenant_id: UUID | None, actor: str | None, action: str | None,
    since: datetime | None, until: datetime | None,
) -> AuditFilter:  # fmt: skip
    return AuditFilter(tenant_id=tenant_id, actor=actor, action=action, since=since, until=until)


def _stream(body: object, fmt: str, name: str) -> StreamingResponse:
    return StreamingResponse(
        body,  # type: ignore[arg-type]
        media_type=MEDIA[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}.{fmt}"'},
    )


@router.get("/operator/audit", response_model=AuditPage, responses=error_responses(401, 403, 422))
async def operator_audit(
    _: OperatorPrincipal,
    services: ServicesDep,
    tenant_id: UUID | None = None,
    actor: str | None = Query(None, max_length=300),
    action: str | None = Query(None, max_length=200),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(100, ge=1, le=1000),
    after: int | None = Query(None, ge=0, description="the `next_after` of the previous page"),
) -> AuditPage:
    f = _filter(tenant_id, actor, action, since, until)
    rows, next_after = await audit.page(services, f, limit=limit, after=after, tenant=None)
    return AuditPage(data=[AuditEntryOut.model_validate(r) for r in rows], next_after=next_after)


@router.get("/operator/audit/export", response_class=StreamingResponse, responses=_EXPORT)
async def operator_audit_export(
    _: OperatorPrincipal,
    services: ServicesDep,
    format: Literal["jsonl", "csv"] = "jsonl",
    tenant_id: UUID | None = None,
    actor: str | None = Query(None, max_length=300),
    action: str | None = Query(None, max_length=200),
    since: datetime | None = None,
    until: datetime | None = None,
) -> StreamingResponse:
    f = _filter(tenant_id, actor, action, since, until)
    return _stream(audit.export(services, f, format, tenant=None), format, "audit")


@router.get("/audit", response_model=AuditPage, responses=error_responses(401, 403, 422))
async def tenant_audit(
    principal: ReadPrincipal,
    services: ServicesDep,
    actor: str | None = Query(None, max_length=300),
    action: str | None = Query(None, max_length=200),
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = Query(100, ge=1, le=1000),
    after: int | None = Query(None, ge=0),
) -> AuditPage:
    """The calling tenant's own audit rows."""
    tenant = principal.require_tenant()
    f = _filter(tenant, actor, action, since, until)
    rows, next_after = await audit.page(services, f, limit=limit, after=after, tenant=tenant)
    return AuditPage(data=[AuditEntryOut.model_validate(r) for r in rows], next_after=next_after)


@router.get("/audit/export", response_class=StreamingResponse, responses=_EXPORT)
async def tenant_audit_export(
    principal: ReadPrincipal,
    services: ServicesDep,
    format: Literal["jsonl", "csv"] = "jsonl",
    actor: str | None = Query(None, max_length=300),
    action: str | None = Query(None, max_length=200),
    since: datetime | None = None,
    until: datetime | None = None,
) -> StreamingResponse:
    tenant = principal.require_tenant()
    f = _filter(tenant, actor, action, since, until)
    return _stream(audit.export(services, f, format, tenant=tenant), format, "audit")
