"""A tenant's erasure (ADR 0018): start it once, follow it."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from adapters.db import tenants as tenant_repo
from adapters.db.audit import record_audit
from adapters.temporal import start_erasure
from services.context import Services
from services.errors import NotFound
from workflows.erasure import TenantErasureWorkflow, erasure_workflow_id
from workflows.erasure_io import ErasureInput, ErasureStep


@dataclass(frozen=True)
class ErasureStatus:
    workflow_id: str
    started_now: bool
    status: str  # running | completed | failed ...
    steps: list[ErasureStep]


async def request_erasure(
    services: Services, tenant_id: UUID, actor: str, reason: str | None
) -> ErasureStatus:
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        if await tenant_repo.get_tenant(conn, tenant_id) is None:
            raise NotFound(f"no tenant {tenant_id}")
    started = await start_erasure(
        services.temporal,
        ErasureInput(
            str(tenant_id), actor, reason, stripe_task_queue=services.settings.stripe_task_queue
        ),
        task_queue=services.settings.task_queue,
    )
    workflow_id = erasure_workflow_id(str(tenant_id))
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        await record_audit(
            conn,
            actor=actor,
            action="tenant.erasure_requested",
            subject_type="tenant",
            subject_id=str(tenant_id),
            tenant_id=tenant_id,
            # A second request finds the first erasure and changes nothing.
            before={"erasure": None if started else workflow_id},
            after={"erasure": workflow_id},
            details={"started_now": started, "reason": reason},
        )
    return await erasure_status(services, tenant_id, started_now=started)


async def erasure_status(
    services: Services, tenant_id: UUID, *, started_now: bool = False
) -> ErasureStatus:
    workflow_id = erasure_workflow_id(str(tenant_id))
    handle = services.temporal.get_workflow_handle_for(TenantErasureWorkflow.run, workflow_id)
    try:
        described = await handle.describe()
        steps = await handle.query(TenantErasureWorkflow.steps)
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise NotFound(f"tenant {tenant_id} has not been erased") from error
        raise
    status = described.status or WorkflowExecutionStatus.RUNNING
    return ErasureStatus(workflow_id, started_now, status.name.lower(), steps)
