"""Operator endpoints for grace windows (soft cap and payment): list a tenant's windows, extend
one, end one early, or waive one. Operator scope only; every action is audited.

`end` stops the window and applies its expiry effect now (a payment window suspends the tenant;
a soft-cap window blocks the metric). `resolve` waives it: the effect never happens, and a payment
window that already suspended the tenant lifts the suspension (unless another unpaid invoice's
window holds it). The row is updated by the workflow, so the response reports the request; read
the list again to see the new state. See docs/adr/0006-payment-grace.md.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status

from api.auth import AuthFirstRoute, OperatorPrincipal, ServicesDep
from api.errors import FieldInvalid, error_responses
from api.grace_schemas import (
    MAX_EXTENSION_DAYS,
    GraceActionIn,
    GraceActionOut,
    GraceExtendedOut,
    GraceExtendIn,
    GracePeriodList,
    GracePeriodOut,
)
from services import grace

router = APIRouter(route_class=AuthFirstRoute, prefix="/api/billing/operator", tags=["operator"])


@router.get(
    "/tenants/{tenant_id}/grace-periods",
    response_model=GracePeriodList,
    responses=error_responses(401, 403, 404),
)
async def list_grace_periods(
    tenant_id: UUID, _: OperatorPrincipal, services: ServicesDep
) -> GracePeriodList:
    """Every grace window of the tenant, newest first (read from Postgres, not the workflows)."""
    rows = await grace.windows(services, tenant_id)
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
    workflow_id, result = await grace.extend(
        services, tenant_id, grace_id, seconds, principal.actor, body.reason
    )
    return GraceExtendedOut(
        workflow_id=workflow_id, started_at=result.started_at, expires_at=result.expires_at
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
    reason = body.reason if body else None
    workflow_id = await grace.end(services, tenant_id, grace_id, principal.actor, reason)
    return GraceActionOut(workflow_id=workflow_id, action="ended")


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
    reason = body.reason if body else None
    workflow_id = await grace.waive(services, tenant_id, grace_id, principal.actor, reason)
    return GraceActionOut(workflow_id=workflow_id, action=grace.WAIVED)
