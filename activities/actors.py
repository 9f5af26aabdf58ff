"""Who an activity writes on behalf of, as the audit trail names it (ADR 0019)."""

from __future__ import annotations

from temporalio import activity


def system_actor() -> str:
    """`system:{workflow id}`: the workflow whose decision the running activity writes. Outside
    an activity (a direct call in a test) there is no workflow to name: `system`."""
    if not activity.in_activity():
        return "system"
    info = activity.info()
    return f"system:{info.workflow_id or info.activity_type}"


def workflow_id() -> str | None:
    """The calling workflow's id, when called from an activity."""
    return activity.info().workflow_id if activity.in_activity() else None
