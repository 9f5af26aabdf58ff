"""Operator use cases on grace windows: list them, extend one, end one now, waive one.

The window itself is a `grace_window` workflow (ADR 0006); Postgres holds its projection. Each
action checks the window's row, messages its workflow, and records the action in the audit log
with the operator and the reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from adapters.db import grace as grace_repo
from adapters.db import tenants as tenant_repo
from adapters.db.audit import record_audit
from billing.grace import PAYMENT
from services.context import Services
from services.errors import Conflict, NotFound, ServiceUnavailable
from workflows.grace import GraceWindowWorkflow
from workflows.grace_io import GraceEndEarly, GraceExtend, GraceResolve, GraceStatus

WAIVED = "waived"


async def windows(services: Services, tenant_id: UUID) -> list[Any]:
    """Every grace window of the tenant, newest first (read from Postgres, not the workflows)."""
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        if await tenant_repo.get_tenant(conn, tenant_id) is None:
            raise NotFound(f"no tenant {tenant_id}")
        return list(await grace_repo.list_windows(conn, tenant_id))


async def extend(
    services: Services,
    tenant_id: UUID,
    grace_id: UUID,
    seconds: float,
    actor: str,
    reason: str | None,
) -> tuple[str, GraceStatus]:
    """Push the window's deadline back; the effect then happens at the new time, not the old.
    Returns the window's workflow id and its new bounds."""
    row = await _window(services, tenant_id, grace_id)
    if _closed(row):
        raise Conflict("this grace window has already expired or been resolved")
    handle = services.temporal.get_workflow_handle_for(GraceWindowWorkflow.run, row.workflow_id)
    try:
        result = await handle.execute_update(
            GraceWindowWorkflow.extend, GraceExtend(seconds=seconds, actor=actor)
        )
    except WorkflowUpdateFailedError as err:
        raise Conflict("this grace window can no longer be extended") from err
    except RPCError as err:
        raise _unreachable(err) from err
    details = {"seconds": seconds, "reason": reason}
    after = {"expires_at": result.expires_at, "resolution": row.resolution}
    await _audit(services, row, actor, "grace.extended", after, details)
    return row.workflow_id, result


async def end(
    services: Services, tenant_id: UUID, grace_id: UUID, actor: str, reason: str | None
) -> str:
    """Stop the window and apply its expiry effect now (payment: the tenant is suspended)."""
    row = await _window(services, tenant_id, grace_id)
    if _closed(row):
        raise Conflict("this grace window has already expired or been resolved")
    try:
        await services.temporal.get_workflow_handle(row.workflow_id).signal(
            GraceWindowWorkflow.end_early, GraceEndEarly(actor=actor)
        )
    except RPCError as err:
        raise _unreachable(err) from err
    after = {"expires_at": _iso(row.expires_at), "resolution": "ended"}
    await _audit(services, row, actor, "grace.ended", after, {"reason": reason})
    return str(row.workflow_id)


async def waive(
    services: Services, tenant_id: UUID, grace_id: UUID, actor: str, reason: str | None
) -> str:
    """Waive the window: its effect never happens, or (an expired payment window) is lifted."""
    row = await _window(services, tenant_id, grace_id)
    if _closed(row) and row.resolution not in ("expired", "ended"):
        raise Conflict("this grace window is already resolved")
    if _closed(row) and row.kind != PAYMENT:
        raise Conflict("this grace window has expired; its effect stays")
    try:
        await services.temporal.get_workflow_handle(row.workflow_id).signal(
            GraceWindowWorkflow.resolve, GraceResolve(WAIVED, actor)
        )
    except RPCError as err:
        raise _unreachable(err) from err
    after = {"expires_at": _iso(row.expires_at), "resolution": WAIVED}
    await _audit(services, row, actor, "grace.waived", after, {"reason": reason})
    return str(row.workflow_id)


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


def _iso(at: datetime) -> str:
    return at.isoformat()


async def _audit(
    services: Services,
    row: Any,
    actor: str,
    action: str,
    after: dict[str, Any],
    details: dict[str, Any],
) -> None:
    """The window as it was (the row read before the command) and as the command left it."""
    async with services.system_db.tenant_transaction(row.tenant_id) as conn:
        await record_audit(
            conn,
            actor=actor,
            action=action,
            subject_type="grace_period",
            subject_id=row.workflow_id,
            tenant_id=row.tenant_id,
            before={"expires_at": _iso(row.expires_at), "resolution": row.resolution},
            after=after,
            details=details,
        )


def _unreachable(err: RPCError) -> Exception:
    if err.status == RPCStatusCode.NOT_FOUND:
        return Conflict("the grace window's workflow is no longer running")
    return ServiceUnavailable("Temporal is unavailable; try again")
