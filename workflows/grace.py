"""GraceWindowWorkflow (`grace_window`): a durable deadline after which an effect happens unless
someone resolves it first. Generic over its `kind`: a soft-capped metric (effect: the metric is
blocked for the period) or an unpaid invoice (effect: the tenant is suspended).

Id scheme: `grace:{tenant}:{subject}:{period_key}` for soft caps and
`grace:{tenant}:payment:{invoice_id}` for unpaid invoices (`grace_id_for`), started with
USE_EXISTING, so detecting the same crossing or failure twice never opens a second window.

A payment window outlives its expiry: the suspension stays in force until the window is settled
by `resolve` ("paid" or "waived" lift it at once; any other resolution, e.g. "voided", closes the
window and leaves the tenant suspended). See docs/adr/0006-payment-grace.md.

Messages: `resolve` (signal: close without the effect, e.g. "upgraded"/"paid"), `end_early`
(signal: run the effect now), `extend` (update with a validator: push the deadline back; returns
the new status), `status` (query).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    import workflows.activity_refs as refs
    from billing.grace import PAYMENT
    from workflows.activity_refs import call
    from workflows.grace_io import (
        GraceEffectInput,
        GraceEffectResult,
        GraceEndEarly,
        GraceExtend,
        GraceInput,
        GraceProjection,
        GraceResolve,
        GraceResult,
        GraceStatus,
        PaymentSettled,
        PaymentSettlement,
    )
    from workflows.retry import DB_RETRY, db_activity

ACTIVITY_TIMEOUT = timedelta(seconds=30)


# Resolutions of an expired payment window that give the tenant its access back.
LIFTING_RESOLUTIONS = frozenset({"paid", "waived"})
# Marks the code that keeps an expired payment window open until it is settled; histories
# recorded before it closed the window right after suspending.
PAYMENT_HOLD_PATCH = "payment-grace-holds-suspension"


def grace_workflow_id(tenant_id: str, subject: str, period_key: str) -> str:
    return f"grace:{tenant_id}:{subject}:{period_key}"


def payment_grace_workflow_id(tenant_id: str, invoice_id: str) -> str:
    # One payment window per invoice: the invoice is the "period" of a payment failure.
    return grace_workflow_id(tenant_id, PAYMENT, invoice_id)


def grace_id_for(input: GraceInput) -> str:
    if input.kind == PAYMENT:
        return payment_grace_workflow_id(input.tenant_id, input.subject)
    return grace_workflow_id(input.tenant_id, input.subject, input.period_key)


@workflow.defn(name="grace_window")
class GraceWindowWorkflow:
    @workflow.init
    def __init__(self, input: GraceInput) -> None:
        # The window's bounds exist before `run` starts: a `resolve` or `extend` delivered with
        # the first workflow task acts on them (no command: recorded histories replay as-is).
        self._started_at: datetime | None = workflow.now()
        self._expires_at: datetime | None = self._started_at + timedelta(
            seconds=input.duration_seconds / input.time_scale
        )
        self._resolution: str | None = None
        self._resolved_by: str | None = None
        self._end_early = False
        self._deadline_moved = False
        # Set once the expiry effect is under way: a later `resolve` settles the expired window
        # instead of preventing the effect (which may already have committed).
        self._expiring = False
        self._holding = False
        self._settlement: GraceResolve | None = None

    @workflow.run
    async def run(self, input: GraceInput) -> GraceResult:
        assert self._expires_at is not None
        await self._project(input)
        while self._resolution is None and not self._end_early:
            remaining = (self._expires_at - workflow.now()).total_seconds()
            if remaining <= 0:
                break
            try:
                self._describe(input, f"open until {self._expires_at.isoformat()}")
                await workflow.wait_condition(
                    lambda: self._resolution is not None or self._end_early or self._deadline_moved,
                    timeout=timedelta(seconds=remaining),
                    timeout_summary=f"{input.kind} grace until {self._expires_at:%Y-%m-%d %H:%M}",
                )
            except TimeoutError:
                break
            if self._deadline_moved:
                self._deadline_moved = False
                await self._project(input)

        applied = False
        if self._resolution is None:
            self._expiring = True
            result: GraceEffectResult = await call(
                refs.APPLY_GRACE_EXPIRY,
                GraceEffectInput(
                    tenant_id=input.tenant_id,
                    kind=input.kind,
                    subject=input.subject,
                    period_start=input.period_start,
                    actor=self._resolved_by or f"workflow:{workflow.info().workflow_id}",
                    workflow_id=workflow.info().workflow_id,
                    resolution="ended" if self._end_early else "expired",
                ),
                **db_activity(f"grace expired: {input.kind} {input.subject}"),
            )
            applied = result.applied
            self._resolution = "ended" if self._end_early else "expired"
        await self._project(input, resolved=True)
        self._describe(input, f"{self._resolution}")
        lifted = False
        # `patched` last, so soft-cap windows and resolved payment windows record no marker.
        if (
            input.kind == PAYMENT
            and self._resolution in ("expired", "ended")
            and workflow.patched(PAYMENT_HOLD_PATCH)
        ):
            lifted = await self._hold_suspension(input)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return GraceResult(
            resolution=self._resolution, effect_applied=applied, effect_lifted=lifted
        )

    async def _hold_suspension(self, input: GraceInput) -> bool:
        """Keep the window open while the suspension it stands for is in force, so "paid" can
        lift it at once; no timer: the subscription (paid, voided, canceled) settles it."""
        self._holding = True
        self._describe(input, "expired: tenant suspended until the invoice is settled")
        await workflow.wait_condition(lambda: self._settlement is not None)
        assert self._settlement is not None
        settled: PaymentSettled = await call(
            refs.SETTLE_PAYMENT_GRACE,
            PaymentSettlement(
                workflow_id=workflow.info().workflow_id,
                tenant_id=input.tenant_id,
                invoice_id=input.subject,
                resolution=self._settlement.resolution,
                actor=self._settlement.actor,
                lift=self._settlement.resolution in LIFTING_RESOLUTIONS,
            ),
            **db_activity(f"grace settled: {self._settlement.resolution}"),
        )
        self._holding = False
        self._resolution = self._settlement.resolution
        self._resolved_by = self._settlement.actor
        self._describe(input, f"settled: {self._resolution}")
        return settled.reactivated

    async def _project(self, input: GraceInput, *, resolved: bool = False) -> None:
        assert self._started_at is not None
        assert self._expires_at is not None
        await call(
            refs.RECORD_GRACE_PERIOD,
            GraceProjection(
                workflow_id=workflow.info().workflow_id,
                tenant_id=input.tenant_id,
                kind=input.kind,
                subject=input.subject,
                started_at=self._started_at.isoformat(),
                expires_at=self._expires_at.isoformat(),
                resolved_at=workflow.now().isoformat() if resolved else None,
                resolution=self._resolution if resolved else None,
                actor=(self._resolved_by or input.actor) if resolved else input.actor,
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DB_RETRY,
            summary="record grace window" + (f" ({self._resolution})" if resolved else ""),
        )

    def _describe(self, input: GraceInput, state: str) -> None:
        """The Temporal UI's current details: the window's kind, subject and state."""
        workflow.set_current_details(f"{input.kind} grace for {input.subject}: {state}")

    @workflow.signal(name="resolve")
    def resolve(self, message: GraceResolve) -> None:
        if self._resolution is None and not self._end_early and not self._expiring:
            self._resolution = message.resolution
            self._resolved_by = message.actor
        elif self._settlement is None and (self._expiring or self._holding or self._end_early):
            # Too late to prevent the effect: keep it to settle the expired window (payment
            # windows; a soft-cap window ignores it, as before).
            self._settlement = message

    @workflow.signal(name="end_early")
    def end_early(self, message: GraceEndEarly) -> None:
        if self._resolution is None and not self._expiring:
            self._end_early = True
            self._resolved_by = message.actor

    @workflow.update(name="extend")
    def extend(self, message: GraceExtend) -> GraceStatus:
        assert self._expires_at is not None
        self._expires_at += timedelta(seconds=message.seconds)
        self._deadline_moved = True
        return self.status()

    @extend.validator
    def _validate_extend(self, message: GraceExtend) -> None:
        if message.seconds <= 0:
            raise ApplicationError("extend needs a positive number of seconds", type="invalid")
        # Once the expiry effect is under way, a later deadline would no longer mean anything.
        if (
            self._expires_at is None
            or self._resolution is not None
            or self._end_early
            or self._expiring
        ):
            raise ApplicationError("this grace window is already closed", type="invalid")

    @workflow.query(name="status")
    def status(self) -> GraceStatus:
        return GraceStatus(
            started_at=self._started_at.isoformat() if self._started_at else "",
            expires_at=self._expires_at.isoformat() if self._expires_at else "",
            resolution=self._resolution,
            effect_in_force=self._holding,
        )
