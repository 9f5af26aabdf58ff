"""The one call a workflow makes to notify a tenant: `await notify(...)` queues the notification
for every endpoint of the tenant (idempotent by message id) and starts its deliveries.

Event type names are listed in docs/notifications.md; `message_id` must be the notification's
business identity (e.g. `invoice.paid:{invoice_id}`, `dunning.step:{invoice_id}:{attempt}`) so a
replayed workflow or a retried activity never notifies twice.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    # The catalogue's types (billing/notifications.py), re-exported for workflow code.
    import workflows.activity_refs as refs
    from billing.notifications import (
        DUNNING_STEP,
        EVENT_TYPES,
        INVOICE_DISPUTE_CLOSED,
        INVOICE_DISPUTED,
        INVOICE_PAID,
        INVOICE_PAYMENT_FAILED,
        INVOICE_SENT,
        PAYMENT_METHOD_EXPIRING,
        QUOTA_THRESHOLD,
        SUBSCRIPTION_ACTIVATED,
        SUBSCRIPTION_CANCELED,
        SUBSCRIPTION_TRIAL_ENDING,
        TENANT_SUSPENDED,
    )
    from workflows.activity_refs import call, call_local
    from workflows.notification_io import SendNotificationInput, SendNotificationResult
    from workflows.retry import DB_RETRY


async def notify(
    tenant_id: str,
    event_type: str,
    message_id: str,
    payload: dict[str, Any],
    *,
    local: bool = False,
) -> SendNotificationResult:
    """Call from workflow code only. `local`: as a local activity (ADR 0025; the subscription
    workflow's runs since then), idempotent by `message_id` like the activity."""
    arg = SendNotificationInput(tenant_id, event_type, message_id, payload)
    run = call_local if local else call
    return await run(
        refs.SEND_NOTIFICATION,
        arg,
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=DB_RETRY,
        summary=f"notify {event_type}",
    )


__all__ = [
    "DUNNING_STEP",
    "EVENT_TYPES",
    "INVOICE_DISPUTED",
    "INVOICE_DISPUTE_CLOSED",
    "INVOICE_SENT",
    "INVOICE_PAID",
    "INVOICE_PAYMENT_FAILED",
    "PAYMENT_METHOD_EXPIRING",
    "QUOTA_THRESHOLD",
    "SUBSCRIPTION_ACTIVATED",
    "SUBSCRIPTION_CANCELED",
    "SUBSCRIPTION_TRIAL_ENDING",
    "TENANT_SUSPENDED",
    "notify",
]
