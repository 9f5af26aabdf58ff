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
    from workflows.io import SendNotificationInput, SendNotificationResult
    from workflows.retry import DB_RETRY

# Event types of the catalogue (docs/notifications.md), each one emitted somewhere: a test
# compares this list, the catalogue and the code that sends them.
SUBSCRIPTION_ACTIVATED = "subscription.activated"
SUBSCRIPTION_TRIAL_ENDING = "subscription.trial_ending"
SUBSCRIPTION_CANCELED = "subscription.canceled"
INVOICE_PAYMENT_FAILED = "invoice.payment_failed"
INVOICE_PAID = "invoice.paid"
DUNNING_STEP = "dunning.step"
PAYMENT_METHOD_EXPIRING = "payment_method.expiring"
TENANT_SUSPENDED = "tenant.suspended"
# Queued by usage ingestion (the API) in the transaction that records the crossing.
QUOTA_THRESHOLD = "quota.threshold"

EVENT_TYPES = (
    SUBSCRIPTION_ACTIVATED,
    SUBSCRIPTION_TRIAL_ENDING,
    SUBSCRIPTION_CANCELED,
    INVOICE_PAYMENT_FAILED,
    INVOICE_PAID,
    DUNNING_STEP,
    PAYMENT_METHOD_EXPIRING,
    TENANT_SUSPENDED,
    QUOTA_THRESHOLD,
)


async def notify(
    tenant_id: str, event_type: str, message_id: str, payload: dict[str, Any]
) -> SendNotificationResult:
    """Call from workflow code only."""
    result: SendNotificationResult = await workflow.execute_activity(
        "send_notification",
        SendNotificationInput(tenant_id, event_type, message_id, payload),
        result_type=SendNotificationResult,
        start_to_close_timeout=timedelta(seconds=30),
        retry_policy=DB_RETRY,
        summary=f"notify {event_type}",
    )
    return result
