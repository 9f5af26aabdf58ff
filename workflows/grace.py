"""GraceWindowWorkflow (`grace_window`): a durable deadline after which an effect happens unless
someone resolves it first. Generic over its `kind`: a soft-capped metric (effect: the metric is
blocked for the period) or an unpaid invoice (effect: the tenant is suspended).

Id scheme: `grace:{tenant}:{subject}:{period_key}`, started with USE_EXISTING, so detecting the
same crossing twice never opens a second window. Messages: `resolve` (signal: close without the
effect, e.g. "upgraded"/"paid"), `end_early` (signal: run the effect now), `extend` (update with a
validator: push the deadline back; returns the new status), `status` (query).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from workflows.grace_io import (
        GraceEffectInput,
        GraceEffectResult,
        GraceEndEarly,
        GraceExtend,
        GraceInput,
        GraceProjected,
        GraceProjection,
        GraceResolve,
        GraceResult,
        GraceStatus,
    )
    from workflows.retry import DB_RETRY

ACTIVITY_TIMEOUT = timedelta(seconds=30)


def grace_workflow_id(tenant_id: str, subject: str, period_key: str) -> str:
    return f"grace:{tenant_id}:{subject}:{period_key}"


@workflow.defn(name="grace_window")
class GraceWindowWorkflow:
    def __init__(self) -> None:
        self._started_at: datetime | None = None
        self._expires_at: datetime | None = None
        self._resolution: str | None = None
        self._resolved_by: str | None = None
        self._end_early = False
        self._deadline_moved = False

    @workflow.run
    async def run(self, input: GraceInput) -> GraceResult:
        self._started_at = workflow.now()
        self._expires_at = self._started_at + timedelta(
            seconds=input.duration_seconds / input.time_scale
        )
        await self._project(input)
        while self._resolution is None and not self._end_early:
            remaining = (self._expires_at - workflow.now()).total_seconds()
            if remaining <= 0:
                break
            try:
                await workflow.wait_condition(
                    lambda: self._resolution is not None or self._end_early or self._deadline_moved,
                    timeout=timedelta(seconds=remaining),
                )
            except TimeoutError:
                break
            if self._deadline_moved:
                self._deadline_moved = False
                await self._project(input)

        applied = False
        if self._resolution is None:
            result: GraceEffectResult = await workflow.execute_activity(
                "apply_grace_expiry",
                GraceEffectInput(
                    tenant_id=input.tenant_id,
                    kind=input.kind,
                    subject=input.subject,
                    period_start=input.period_start,
                    actor=self._resolved_by or f"workflow:{workflow.info().workflow_id}",
                ),
                result_type=GraceEffectResult,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=DB_RETRY,
                summary=f"grace expired: {input.kind} {input.subject}",
            )
            applied = result.applied
            self._resolution = "ended" if self._end_early else "expired"
        await self._project(input, resolved=True)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return GraceResult(resolution=self._resolution, effect_applied=applied)

    async def _project(self, input: GraceInput, *, resolved: bool = False) -> None:
        assert self._started_at is not None
        assert self._expires_at is not None
        await workflow.execute_activity(
            "record_grace_period",
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
            result_type=GraceProjected,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DB_RETRY,
        )

    @workflow.signal(name="resolve")
    def resolve(self, message: GraceResolve) -> None:
        if self._resolution is None and not self._end_early:
            self._resolution = message.resolution
            self._resolved_by = message.actor

    @workflow.signal(name="end_early")
    def end_early(self, message: GraceEndEarly) -> None:
        if self._resolution is None:
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
        if self._expires_at is None or self._resolution is not None or self._end_early:
            raise ApplicationError("this grace window is already closed", type="invalid")

    @workflow.query(name="status")
    def status(self) -> GraceStatus:
        return GraceStatus(
            started_at=self._started_at.isoformat() if self._started_at else "",
            expires_at=self._expires_at.isoformat() if self._expires_at else "",
            resolution=self._resolution,
        )
