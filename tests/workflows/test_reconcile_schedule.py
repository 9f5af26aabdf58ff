"""The reconciliation schedule is created once, whatever the number of worker starts."""

from __future__ import annotations

import uuid

from temporalio.testing import WorkflowEnvironment

from adapters.temporal import (
    ensure_audit_retention_schedule,
    ensure_reconcile_schedule,
    ensure_stripe_sweep_schedule,
)
from config import Settings
from workflows.audit_retention import SCHEDULE_ID as AUDIT_RETENTION_SCHEDULE_ID
from workflows.reconcile import SCHEDULE_ID
from workflows.reconcile_stripe import SCHEDULE_ID as STRIPE_SWEEP_SCHEDULE_ID


async def test_schedule_is_created_idempotently(settings: Settings) -> None:
    # The Java time-skipping server has no schedules; the local dev server does.
    from tests.harness import venv_executable

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_executable("temporal"),
        namespace=f"ns-{uuid.uuid4().hex[:8]}",
    )
    try:
        assert await ensure_reconcile_schedule(env.client, settings) is True
        assert await ensure_reconcile_schedule(env.client, settings) is False
        described = await env.client.get_schedule_handle(SCHEDULE_ID).describe()
        assert described.schedule.spec.intervals[0].every.total_seconds() == 3600
        # The lost-webhook sweeper's schedule, the same way.
        assert await ensure_stripe_sweep_schedule(env.client, settings) is True
        assert await ensure_stripe_sweep_schedule(env.client, settings) is False
        sweep = await env.client.get_schedule_handle(STRIPE_SWEEP_SCHEDULE_ID).describe()
        assert sweep.schedule.spec.intervals[0].every.total_seconds() == 30 * 60
        # The audit log's retention purge, daily.
        assert await ensure_audit_retention_schedule(env.client, settings) is True
        assert await ensure_audit_retention_schedule(env.client, settings) is False
        audit = await env.client.get_schedule_handle(AUDIT_RETENTION_SCHEDULE_ID).describe()
        assert audit.schedule.spec.intervals[0].every.total_seconds() == 24 * 3600
    finally:
        await env.shutdown()
