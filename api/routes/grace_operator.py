"""Operator endpoints for grace windows (soft cap and payment): list a tenant's windows, extend
one, end one early, or waive one. Operator scope only; every action is audited.

`end` stops the window and applies its expiry effect now (a payment window suspends the tenant;
a soft-cap window blocks the metric). `resolve` waives it: the effect never happens, and a payment
window that already suspended the tenant lifts the suspension (unless another unpaid invoice's
window holds it). The row is updated by the workflow, so the response reports the request; read
the list again to see the new state. See docs/adr/0006-payment-grace.md.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, status
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from adapters.db import grace as grace_repo
from adapters.db import tenants as tenant_repo
from adapters.db.audit import record_audit
from api.auth import AuthFirstRoute, OperatorPrincipal, ServicesDep
from api.errors import Conflict, FieldInvalid, NotFound, ServiceUnavailable, error_responses
from api.grace_schemas import (
    MAX_EXTENSION_DAYS,
    GraceActionIn,
    GraceActionOut,
    GraceExtendedOut,
    GraceExtendIn,
    GracePeriodList,
    GracePeriodOut,
)
from api.services import Services
from billing.grace import PAYMENT
from workflows.grace import GraceWindowWorkflow
from workflows.grace_io import GraceEndEarly, GraceExtend, GraceResolve

router = APIRouter(route_class=AuthFirstRoute, prefix="/api/billing/operator", tags=["operator"])

WAIVED = "waived"


async def _window(services: Services, tenant_id: UUID, grace_id: UUID) -> Any:
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        if await tenant_repo.get_tenant(conn, tenant_id) is None:
            raise NotFound(f"no tenant {tenant_id}")
        row = await grace_repo.get_window(conn, tenant_id, grace_id)
    if row is None:
        raise NotFound(f"no grace period {grace_id} for tenant {tenant_id}")
    return row


def _closed(row: Any) -> bool:
    # An expired payment window is still open to `resolve` (it holds the suspension).
    return row.resolved_at is not None


async def _audit(
    services: Services, row: Any, actor: str, action: str, details: dict[str, Any]
) -> None:
    async with services.system_db.tenant_transaction(row.tenant_id) as conn:
        await record_audit(
            conn,
            actor=actor,
            action=action,
            subject_type="grace_period",
            subject_id=row.workflow_id,
            tenant_id=row.tenant_id,
            details=details,
        )


def _reason(body: GraceActionIn | None) -> dict[str, Any]:
    return {"reason": body.reason if body else None}


def _unreachable(err: RPCError) -> Exception:
    if err.status == RPCStatusCode.NOT_FOUND:
        return Conflict("the grace window's workflow is no longer running")
    return ServiceUnavailable("Temporal is unavailable; try again")


@router.get(
    "/tenants/{tenant_id}/grace-periods",
    response_model=GracePeriodList,
    responses=error_responses(401, 403, 404),
)
async def list_grace_periods(
    tenant_id: UUID, _: OperatorPrincipal, services: ServicesDep
) -> GracePeriodList:
    """Every grace window of the tenant, newest first (read from Postgres, not the workflows)."""
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        if await tenant_repo.get_tenant(conn, tenant_id) is None:
            raise NotFound(f"no tenant {tenant_id}")
        rows = await grace_repo.list_windows(conn, tenant_id)
    return GracePeriodList(items=[GracePeriodOut.model_validate(r) for r in rows])


@router.post(
    "/tenants/{tenant_id}/grace-periods/{grace_id}/extend",
    response_model=GraceExtendedOut,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def extend_grace_period(
    tenant_id: UUID,
    grace_id: UUID,
    body: GraceExtendIn,
    principal: OperatorPrincipal,
    services: ServicesDep,
) -> GraceExtendedOut:
    """Push the window's deadline back; the effect then happens at the new time, not the old."""
    seconds = (body.hours or 0) * 3600 + (body.days or 0) * 86400
    if seconds <= 0:
        raise FieldInvalid("hours", "give `hours`, `days`, or both")
    if seconds > MAX_EXTENSION_DAYS * 86400:
        raise FieldInvalid("days", f"an extension is at most {MAX_EXTENSION_DAYS} days")
    row = await _window(services, tenant_id, grace_id)
    if _closed(row):
        raise Conflict("this grace window has already expired or been resolved")
    handle = services.temporal.get_workflow_handle_for(GraceWindowWorkflow.run, row.workflow_id)
    try:
        result = await handle.execute_update(
            GraceWindowWorkflow.extend, GraceExtend(seconds=seconds, actor=principal.actor)
        )
    except WorkflowUpdateFailedError as err:
        raise Conflict("this grace window can no longer be extended") from err
    except RPCError as err:
        raise _unreachable(err) from err
    await _audit(
        services,
        row,
        principal.actor,
        "grace.extended",
        {"seconds": seconds, "expires_at": result.expires_at, "reason": body.reason},
    )
    return GraceExtendedOut(
        workflow_id=row.workflow_id, started_at=result.started_at, expires_at=result.expires_at
    )


@router.post(
    "/tenants/{tenant_id}/grace-periods/{grace_id}/end",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=GraceActionOut,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def end_grace_period(
    tenant_id: UUID,
    grace_id: UUID,
    principal: OperatorPrincipal,
    services: ServicesDep,
    body: GraceActionIn | None = None,
) -> GraceActionOut:
    """Stop the window and apply its expiry effect now (payment: the tenant is suspended)."""
    row = await _window(services, tenant_id, grace_id)
    if _closed(row):
        raise Conflict("this grace window has already expired or been resolved")
    handle = services.temporal.get_workflow_handle(row.workflow_id)
    try:
        await handle.signal(GraceWindowWorkflow.end_early, GraceEndEarly(actor=principal.actor))
    except RPCError as err:
        raise _unreachable(err) from err
    await _audit(services, row, principal.actor, "grace.ended", _reason(body))
    return GraceActionOut(workflow_id=row.workflow_id, action="ended")


@router.post(
    "/tenants/{tenant_id}/grace-periods/{grace_id}/resolve",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=GraceActionOut,
    responses=error_responses(401, 403, 404, 409, 422, 503),
)
async def resolve_grace_period(
    tenant_id: UUID,
    grace_id: UUID,
    principal: OperatorPrincipal,
    services: ServicesDep,
    body: GraceActionIn | None = None,
) -> GraceActionOut:
    """Waive the window: its effect never happens, or (an expired payment window) is lifted."""
    row = await _window(services, tenant_id, grace_id)
    if _closed(row) and row.resolution not in ("expired", "ended"):
        raise Conflict("this grace window is already resolved")
    if _closed(row) and row.kind != PAYMENT:
        raise Conflict("this grace window has expired; its effect stays")
    handle = services.temporal.get_workflow_handle(row.workflow_id)
    try:
        await handle.signal(GraceWindowWorkflow.resolve, GraceResolve(WAIVED, principal.actor))
    except RPCError as err:
        raise _unreachable(err) from err
    await _audit(services, row, principal.actor, "grace.waived", _reason(body))
    return GraceActionOut(workflow_id=row.workflow_id, action=WAIVED)
