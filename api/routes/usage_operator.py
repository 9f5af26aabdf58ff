"""Operator endpoints for usage: per-tenant quota overrides (audited) and reconciliation or
backfill of usage aggregates for a date range. Operator scope only; worker role (cross-tenant)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Query, status

from adapters.db import tenants as tenant_repo
from adapters.db import usage as usage_repo
from adapters.db.audit import record_audit
from adapters.db.usage import Drift
from api.auth import AuthFirstRoute, OperatorPrincipal, ServicesDep
from api.errors import FieldInvalid, NotFound, error_responses
from api.usage_schemas import (
    DriftOut,
    QuotaOverrideIn,
    QuotaOverrideOut,
    ReconcileIn,
    ReconcileOut,
)

router = APIRouter(route_class=AuthFirstRoute, prefix="/api/billing/operator", tags=["operator"])


@router.put(
    "/tenants/{tenant_id}/quota-overrides/{metric}",
    response_model=QuotaOverrideOut,
    responses=error_responses(401, 403, 404, 422),
)
async def put_quota_override(
    tenant_id: UUID,
    metric: str,
    body: QuotaOverrideIn,
    principal: OperatorPrincipal,
    services: ServicesDep,
) -> QuotaOverrideOut:
    """Override one metric's included quantity and/or cap for one tenant (until `expires_at`).
    Takes effect on the next quota check; the previous and new values go to the audit log."""
    if metric not in services.catalog.metrics:
        raise FieldInvalid("metric", "unknown metric")
    if body.included is None and body.cap is None:
        raise FieldInvalid("included", "give `included`, `cap`, or both")
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        if await tenant_repo.get_tenant(conn, tenant_id) is None:
            raise NotFound(f"no tenant {tenant_id}")
        before = (await usage_repo.overrides(conn, tenant_id)).get(metric)
        await usage_repo.upsert_override(
            conn,
            tenant_id=tenant_id,
            metric=metric,
            included=body.included,
            cap=body.cap,
            reason=body.reason,
            actor=principal.actor,
            expires_at=body.expires_at,
        )
        await record_audit(
            conn,
            actor=principal.actor,
            action="quota_override.set",
            subject_type="metric",
            subject_id=metric,
            tenant_id=tenant_id,
            before=None if before is None else {"included": before[0], "cap": before[1]},
            after={"included": body.included, "cap": body.cap},
            details={
                "reason": body.reason,
                "expires_at": body.expires_at.isoformat() if body.expires_at else None,
            },
        )
    services.quota_cache.invalidate(tenant_id)  # this process; others hear it from Postgres
    return QuotaOverrideOut(
        tenant_id=tenant_id, metric=metric, included=body.included, cap=body.cap
    )


@router.delete(
    "/tenants/{tenant_id}/quota-overrides/{metric}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 404),
)
async def delete_quota_override(
    tenant_id: UUID,
    metric: str,
    principal: OperatorPrincipal,
    services: ServicesDep,
    reason: str | None = Query(None, max_length=500, description="kept in the audit row"),
) -> None:
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        before = (await usage_repo.overrides(conn, tenant_id)).get(metric)
        if not await usage_repo.delete_override(conn, tenant_id, metric):
            raise NotFound(f"no override of {metric} for tenant {tenant_id}")
        await record_audit(
            conn,
            actor=principal.actor,
            action="quota_override.removed",
            subject_type="metric",
            subject_id=metric,
            tenant_id=tenant_id,
            before=None if before is None else {"included": before[0], "cap": before[1]},
            after=None,
            details={"reason": reason},
        )
    services.quota_cache.invalidate(tenant_id)


@router.post(
    "/usage/reconcile", response_model=ReconcileOut, responses=error_responses(401, 403, 422)
)
async def reconcile_usage(
    body: ReconcileIn, principal: OperatorPrincipal, services: ServicesDep
) -> ReconcileOut:
    """Recompute daily totals and period counters from raw events for [first, last] (UTC days),
    report the drift, and repair it unless `repair` is false. The backfill for a past range; the
    `reconcile_usage` schedule does the same for recent days."""
    if body.last < body.first:
        raise FieldInvalid("last", "must not be before first")
    if (body.last - body.first).days > 400:
        raise FieldInvalid("last", "a range covers at most 400 days")
    gauges = services.catalog.gauge_metrics
    async with services.system_db.transaction() as conn:
        drift = await usage_repo.find_drift(conn, body.first, body.last, gauges)
        if drift and body.repair:
            await usage_repo.repair_drift(conn, drift, gauges)
        await record_audit(
            conn,
            actor=principal.actor,
            action="usage.reconciled",
            subject_type="usage",
            subject_id=f"{body.first}..{body.last}",
            tenant_id=None,
            before={"drift": _drift_snapshot(drift, lambda d: d.recorded)},
            after={
                "drift": _drift_snapshot(
                    drift, lambda d: d.recomputed if body.repair else d.recorded
                )
            },
            details={"drift": len(drift), "repair": body.repair, "reason": body.reason},
        )
    if drift and body.repair:
        services.quota_cache.invalidate_all()
    return ReconcileOut(
        first=body.first,
        last=body.last,
        drift=[
            DriftOut(
                tenant_id=d.tenant_id,
                metric=d.metric,
                usage_date=d.usage_date,
                period_start=d.period_start,
                recorded=None if d.recorded is None else str(d.recorded),
                recomputed=None if d.recomputed is None else str(d.recomputed),
            )
            for d in drift
        ],
        repaired=len(drift) if body.repair else 0,
    )


AUDITED_DRIFT_ROWS = 100


def _drift_snapshot(drift: Sequence[Drift], value: Callable[[Drift], Any]) -> list[dict[str, Any]]:
    """The drifted counters (the first 100) with the value they had or were given."""
    return [
        {
            "tenant_id": str(d.tenant_id),
            "metric": d.metric,
            "usage_date": None if d.usage_date is None else d.usage_date.isoformat(),
            "value": None if value(d) is None else str(value(d)),
        }
        for d in drift[:AUDITED_DRIFT_ROWS]
    ]
