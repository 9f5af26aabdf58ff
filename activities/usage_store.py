"""Postgres side effects of the grace window and of usage reconciliation (worker role)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any
from uuid import UUID

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import domain_errors
from adapters import metrics
from adapters.db import grace as grace_repo
from adapters.db import usage as usage_repo
from adapters.db.audit import record_audit
from adapters.db.notifications import enqueue_notification
from adapters.db.session import Database
from billing.catalog import Plan
from billing.grace import PAYMENT, SOFT_CAP
from billing.notifications import TENANT_SUSPENDED
from billing.usage import effective_entitlement, overage_lines, period_key
from workflows.grace_io import (
    GraceEffectInput,
    GraceEffectResult,
    GraceInput,
    GraceProjected,
    GraceProjection,
    PaymentSettled,
    PaymentSettlement,
)
from workflows.reconcile_io import MissingGraceWindows, ReconcileInput, ReconcileResult
from workflows.subscription_io import OverageLineOut, PeriodOverageInput, PeriodOverageResult


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class UsageStore:
    def __init__(self, db: Database, gauge_metrics: Sequence[str]) -> None:
        self._db = db
        self._gauges = tuple(gauge_metrics)

    @activity.defn(name="record_grace_period")
    @domain_errors
    async def record_grace_period(self, input: GraceProjection) -> GraceProjected:
        async with self._db.tenant_transaction(UUID(input.tenant_id)) as conn:
            written = await grace_repo.upsert_window(
                conn,
                tenant_id=UUID(input.tenant_id),
                kind=input.kind,
                subject=input.subject,
                workflow_id=input.workflow_id,
                started_at=_ts(input.started_at),
                expires_at=_ts(input.expires_at),
                resolved_at=_ts(input.resolved_at),
                resolution=input.resolution,
                actor=input.actor,
            )
        return GraceProjected(written=written)

    @activity.defn(name="apply_grace_expiry")
    @domain_errors
    async def apply_grace_expiry(self, input: GraceEffectInput) -> GraceEffectResult:
        """The kind-specific effect of an expired window; idempotent (safe to retry)."""
        tenant_id = UUID(input.tenant_id)
        async with self._db.tenant_transaction(tenant_id) as conn:
            if input.kind == SOFT_CAP:
                period_start = datetime.fromisoformat(input.period_start)
                applied = await usage_repo.set_blocked(
                    conn, tenant_id, input.subject, period_start, blocked=True
                )
                action = "usage.metric_blocked"
                before: dict[str, Any] = {"blocked": False}
                after: dict[str, Any] = {"blocked": True}
            elif input.kind == PAYMENT:
                # Tenant row lock first, as in settle_payment_grace: a suspension and a
                # settlement of two windows of one tenant run one after the other.
                await grace_repo.lock_tenant(conn, tenant_id)
                if input.workflow_id:
                    await grace_repo.mark_in_force(
                        conn, input.workflow_id, input.resolution, input.actor
                    )
                # An operator who ends the window early suspends the tenant themselves.
                reason = "operator" if input.resolution == "ended" else "payment"
                applied = await grace_repo.suspend_tenant(conn, tenant_id, reason)
                action = "tenant.suspended"
                before = {"access_status": "active"}
                after = {"access_status": "suspended", "suspension_reason": reason}
                if applied:
                    # Same transaction as the suspension (outbox): the notice exists if and only
                    # if the suspension committed; the re-dispatcher starts its delivery.
                    await enqueue_notification(
                        conn,
                        tenant_id=tenant_id,
                        event_type=TENANT_SUSPENDED,
                        message_id=f"{TENANT_SUSPENDED}:{input.subject}",
                        payload={
                            "tenant_id": input.tenant_id,
                            "reason": "payment_overdue",
                            "invoice_id": input.subject,
                        },
                    )
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
                    before=before,
                    after=after,
                    details={"period_start": input.period_start},
                )
        return GraceEffectResult(applied=applied)

    @activity.defn(name="settle_payment_grace")
    @domain_errors
    async def settle_payment_grace(self, input: PaymentSettlement) -> PaymentSettled:
        """Settle an expired payment window; idempotent (the row update is guarded by its
        resolution, the reactivation by the tenant's status)."""
        tenant_id = UUID(input.tenant_id)
        async with self._db.tenant_transaction(tenant_id) as conn:
            await grace_repo.lock_tenant(conn, tenant_id)
            await grace_repo.settle(conn, input.workflow_id, input.resolution, input.actor)
            reactivated = False
            if input.lift:
                # The row above no longer counts as in force, so only *other* expired payment
                # windows (other unpaid invoices) keep the tenant suspended.
                reactivated = await grace_repo.lift_suspension(conn, tenant_id)
            if reactivated:
                await record_audit(
                    conn,
                    actor=input.actor,
                    action="tenant.reactivated",
                    subject_type=PAYMENT,
                    subject_id=input.invoice_id,
                    tenant_id=tenant_id,
                    before={"access_status": "suspended"},
                    after={"access_status": "active"},
                    details={"resolution": input.resolution, "grace": input.workflow_id},
                )
        return PaymentSettled(reactivated=reactivated)

    @activity.defn(name="reconcile_usage_days")
    @domain_errors
    async def reconcile_usage_days(self, input: ReconcileInput) -> ReconcileResult:
        first, last = date.fromisoformat(input.first), date.fromisoformat(input.last)
        async with self._db.transaction() as conn:
            drift = await usage_repo.find_drift(conn, first, last, self._gauges)
            if drift and input.repair:
                await usage_repo.repair_drift(conn, drift, self._gauges)
        for d in drift:
            activity.logger.warning("usage drift: %s", d)
        metrics.USAGE_DRIFT.inc(len(drift))
        return ReconcileResult(
            first=input.first,
            last=input.last,
            drift_found=len(drift),
            repaired=len(drift) if input.repair else 0,
        )

    @activity.defn(name="compute_period_overage")
    @domain_errors
    async def compute_period_overage(self, input: PeriodOverageInput) -> PeriodOverageResult:
        """Overage lines of one period for the renewal invoice (read-only; safe to retry).

        Reads the period counters (the same numbers quota checks used) and the tenant's
        operator overrides, and prices them with the plan snapshot given by the workflow."""
        tenant_id = UUID(input.tenant_id)
        plan = Plan.from_dict(input.plan_definition)
        async with self._db.tenant_transaction(tenant_id) as conn:
            counters = await usage_repo.period_counters(
                conn, tenant_id, datetime.fromisoformat(input.period_start)
            )
            overrides = await usage_repo.overrides(conn, tenant_id)
        effective = {
            metric: effective_entitlement(
                plan.entitlement(metric), override_included=inc, override_cap=cap
            )
            for metric, (inc, cap) in overrides.items()
            if metric in plan.metrics
        }
        lines = overage_lines(
            plan, {m: c.quantity for m, c in counters.items()}, overrides=effective
        )
        out = [
            OverageLineOut(
                metric=line.metric,
                used=line.used,
                included=line.included,
                units=line.units,
                unit_size=line.unit_size,
                unit_price=line.unit_price,
                amount=line.amount,
                description=line.description,
            )
            for line in lines
        ]
        return PeriodOverageResult(lines=out, total=sum(line.amount for line in lines))

    @activity.defn(name="find_missing_grace_windows")
    @domain_errors
    async def find_missing_grace_windows(self, input: ReconcileInput) -> MissingGraceWindows:
        async with self._db.transaction() as conn:
            rows = await grace_repo.missing_soft_cap_windows(conn)
        return MissingGraceWindows(
            windows=[
                GraceInput(
                    tenant_id=str(tenant_id),
                    kind=SOFT_CAP,
                    subject=metric,
                    period_key=period_key(period_start),
                    period_start=period_start.isoformat(),
                    duration_seconds=input.soft_cap_grace_seconds,
                    actor="workflow:reconcile_usage",
                    time_scale=input.time_scale,
                )
                for tenant_id, metric, period_start in rows
            ]
        )
