"""NotificationDeliveryWorkflow (`notification:{delivery_id}`): deliver one queued notification
to one tenant endpoint, retrying with exponential backoff (schedule snapshotted in the input),
then dead-letter. The `webhook-id` is the row's message id, the same on every attempt, so a
receiver that got a delivery whose answer was lost can drop the repeat."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    import workflows.activity_refs as refs
    from workflows.activity_refs import call
    from workflows.notification_io import (
        DeliverNotificationInput,
        DeliverNotificationResult,
        MarkNotificationInput,
        NotificationDeliveryInput,
        NotificationDeliveryResult,
    )
    from workflows.retry import DB_RETRY

ACTIVITY_TIMEOUT = timedelta(seconds=60)
ONE_TRY = RetryPolicy(maximum_attempts=1)


def workflow_id(delivery_id: str) -> str:
    return f"notification:{delivery_id}"


@workflow.defn(name="notification_delivery")
class NotificationDeliveryWorkflow:
    @workflow.run
    async def run(self, input: NotificationDeliveryInput) -> NotificationDeliveryResult:
        attempt = 0
        while True:
            attempt += 1
            try:
                result: DeliverNotificationResult = await call(
                    refs.DELIVER_NOTIFICATION,
                    DeliverNotificationInput(input.delivery_id, attempt),
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=ONE_TRY,
                    summary=f"attempt {attempt}",
                )
            except ActivityError as err:
                result = DeliverNotificationResult(False, None, str(err.cause or err))
            workflow.set_current_details(
                f"attempt {attempt} of {input.schedule.max_attempts}: "
                + ("delivered" if result.delivered else f"failed ({result.error})")
            )
            if result.delivered:
                return NotificationDeliveryResult(input.delivery_id, "delivered", attempt)
            if attempt >= input.schedule.max_attempts:
                await call(
                    refs.MARK_NOTIFICATION,
                    MarkNotificationInput(
                        input.delivery_id, "dead_lettered", attempt, result.error
                    ),
                    start_to_close_timeout=ACTIVITY_TIMEOUT,
                    retry_policy=DB_RETRY,
                    summary="dead-letter the delivery",
                )
                return NotificationDeliveryResult(input.delivery_id, "dead_lettered", attempt)
            await workflow.sleep(
                timedelta(seconds=input.schedule.backoff_seconds(attempt)),
                summary=f"backoff after attempt {attempt}",
            )
