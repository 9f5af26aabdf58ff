"""Activities of the lost-webhook sweeper (`reconcile_stripe`, ADR 0013)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio import activity

from activities.errors import domain_errors
from adapters import metrics
from adapters.db import invoices as invoices_repo
from adapters.db.session import Database
from workflows.reconcile_stripe_io import DriftReport, StaleInvoice, StaleInvoices, SweepInput


class StripeSweepStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn(name="find_stale_invoices")
    @domain_errors
    async def find_stale_invoices(self, input: SweepInput) -> StaleInvoices:
        """Open invoices of every tenant that have not changed for `min_age_seconds`, oldest
        first (a read across tenants: the sweeper's point)."""
        before = datetime.now(UTC) - timedelta(seconds=input.min_age_seconds)
        async with self._db.transaction() as conn:
            rows = await invoices_repo.stale_open_invoices(conn, before, input.limit)
        return StaleInvoices(
            [
                StaleInvoice(
                    tenant_id=str(r.tenant_id),
                    invoice_id=str(r.id),
                    subscription_id=str(r.subscription_id) if r.subscription_id else None,
                    stripe_invoice_id=r.stripe_invoice_id,
                    status=r.status,
                    amount_due=r.amount_due,
                    amount_paid=r.amount_paid,
                )
                for r in rows
            ]
        )

    @activity.defn(name="report_stripe_drift")
    @domain_errors
    async def report_stripe_drift(self, input: DriftReport) -> DriftReport:
        """Count and log each difference (the counter feeds the drift alert)."""
        for d in input.drift:
            activity.logger.warning(
                "stripe drift: tenant %s invoice %s %s engine=%s stripe=%s",
                d.tenant_id,
                d.invoice_id,
                d.field,
                d.engine,
                d.stripe,
            )
            metrics.STRIPE_DRIFT.labels(d.field).inc()
        return input
