"""Postgres side effects of the grace window and of usage reconciliation (worker role)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from uuid import UUID

from sqlalchemy import text
from temporalio import activity
from temporalio.exceptions import ApplicationError

from adapters.db import usage as usage_repo
from adapters.db.audit import record_audit
from adapters.db.session import Database
from workflows.grace_io import (
    GraceEffectInput,
    GraceEffectResult,
    GraceProjected,
    GraceProjection,
    ReconcileInput,
    ReconcileResult,
)

_UPSERT_GRACE = text(
    "INSERT INTO grace_periods (tenant_id, kind, subject, workflow_id, started_at, expires_at, "
    "resolved_at, resolution, actor) VALUES (:tenant_id, :kind, :subject, :workflow_id, "
    ":started_at, :expires_at, :resolved_at, :resolution, :actor) "
    "ON CONFLICT (workflow_id) DO UPDATE SET expires_at = EXCLUDED.expires_at, "
    "resolved_at = EXCLUDED.resolved_at, resolution = EXCLUDED.resolution, "
    "actor = EXCLUDED.actor, updated_at = now() "
    # Once resolved, a late retry of an earlier projection must not reopen the row.
    "WHERE grace_periods.resolved_at IS NULL"
)


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class UsageStore:
    def __init__(self, db: Database, gauge_metrics: Sequence[str]) -> None:
        self._db = db
        self._gauges = tuple(gauge_metrics)

    @activity.defn(name="record_grace_period")
    async def record_grace_period(self, input: GraceProjection) -> GraceProjected:
        async with self._db.transaction() as conn:
            result = await conn.execute(
                _UPSERT_GRACE,
                {
                    "tenant_id": UUID(input.tenant_id),
                    "kind": input.kind,
                    "subject": input.subject,
                    "workflow_id": input.workflow_id,
                    "started_at": _ts(input.started_at),
                    "expires_at": _ts(input.expires_at),
                    "resolved_at": _ts(input.resolved_at),
                    "resolution": input.resolution,
                    "actor": input.actor,
                },
            )
        return GraceProjected(written=bool(result.rowcount))

    @activity.defn(name="apply_grace_expiry")
    async def apply_grace_expiry(self, input: GraceEffectInput) -> GraceEffectResult:
        """The kind-specific effect of an expired window; idempotent (safe to retry)."""
        tenant_id = UUID(input.tenant_id)
        async with self._db.transaction() as conn:
            if input.kind == "soft_cap":
                period_start = datetime.fromisoformat(input.period_start)
                applied = await usage_repo.set_blocked(
                    conn, tenant_id, input.subject, period_start, blocked=True
                )
                action = "usage.metric_blocked"
            elif input.kind == "payment":
                result = await conn.execute(
                    text(
                        "UPDATE tenants SET access_status = 'suspended', updated_at = now() "
                        "WHERE id = :t AND access_status = 'active'"
                    ),
                    {"t": tenant_id},
                )
                applied = bool(result.rowcount)
                action = "tenant.suspended"
            else:
                raise ApplicationError(f"unknown grace kind {input.kind!r}", non_retryable=True)
            if applied:
                await record_audit(
                    conn,
                    actor=input.actor,
                    action=action,
                    subject_type=input.kind,
                    subject_id=input.subject,
                    tenant_id=tenant_id,
                    details={"period_start": input.period_start},
                )
        return GraceEffectResult(applied=applied)

    @activity.defn(name="reconcile_usage_days")
    async def reconcile_usage_days(self, input: ReconcileInput) -> ReconcileResult:
        first, last = date.fromisoformat(input.first), date.fromisoformat(input.last)
        async with self._db.transaction() as conn:
            drift = await usage_repo.find_drift(conn, first, last, self._gauges)
            if drift and input.repair:
                await usage_repo.repair_drift(conn, drift, self._gauges)
        for d in drift:
            activity.logger.warning("usage drift: %s", d)
        return ReconcileResult(
            first=input.first,
            last=input.last,
            drift_found=len(drift),
            repaired=len(drift) if input.repair else 0,
        )
