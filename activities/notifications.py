"""Outbound notification activities: queue + start (the one call other workflows make), one
signed delivery attempt, and the final dead-letter mark."""

from __future__ import annotations

import time
from typing import Protocol
from uuid import UUID

from temporalio import activity

from activities.errors import domain_errors
from adapters import metrics
from adapters.db import notification_deliveries as repo
from adapters.db.notifications import enqueue_notification
from adapters.db.session import Database
from adapters.notification_sender import NotificationSender, notification_body
from workflows.notification_io import (
    DeliverNotificationInput,
    DeliverNotificationResult,
    MarkNotificationInput,
    MarkNotificationResult,
    SendNotificationInput,
    SendNotificationResult,
)


class DeliveryStarter(Protocol):
    """Starts `notification:{delivery_id}` idempotently (adapters.dispatch.Dispatcher)."""

    async def start_notification(self, delivery_id: str) -> None: ...


class NotificationActivities:
    def __init__(self, db: Database, sender: NotificationSender, starter: DeliveryStarter) -> None:
        self._db = db
        self._sender = sender
        self._starter = starter

    @activity.defn(name="send_notification")
    @domain_errors
    async def send_notification(self, input: SendNotificationInput) -> SendNotificationResult:
        """Queue the notification for each of the tenant's endpoints, then start deliveries.
        A retry re-enqueues nothing (message id is unique per endpoint) and the starts are
        idempotent; a start that fails is picked up by the re-dispatcher."""
        tenant_id = UUID(input.tenant_id)
        async with self._db.tenant_transaction(tenant_id) as conn:
            await enqueue_notification(
                conn,
                tenant_id=UUID(input.tenant_id),
                event_type=input.event_type,
                message_id=input.message_id,
                payload=input.payload,
            )
            ids = await repo.pending_ids_for_message(conn, UUID(input.tenant_id), input.message_id)
        for delivery_id in ids:
            await self._starter.start_notification(str(delivery_id))
            async with self._db.tenant_transaction(tenant_id) as conn:
                await repo.mark_started(conn, delivery_id)
        return SendNotificationResult([str(i) for i in ids])

    @activity.defn(name="deliver_notification")
    @domain_errors
    async def deliver_notification(
        self, input: DeliverNotificationInput
    ) -> DeliverNotificationResult:
        delivery_id = UUID(input.delivery_id)
        async with self._db.transaction() as conn:
            row = await repo.delivery_to_send(conn, delivery_id)
        if row is None:
            return DeliverNotificationResult(False, None, "delivery row not found")
        if row.status == repo.DELIVERED:
            return DeliverNotificationResult(True, None, None)
        if not row.enabled:
            outcome_error = "endpoint disabled"
            async with self._db.transaction() as conn:
                await repo.record_attempt(
                    conn, delivery_id, status=None, attempts=input.attempt, error=outcome_error
                )
            return DeliverNotificationResult(False, None, outcome_error)
        # The time of this attempt, as the scheme asks (receivers refuse stale ones); the body
        # carries when the event happened.
        timestamp = int(time.time())
        body = notification_body(row.event_type, row.created_at.isoformat(), row.payload)
        outcome = await self._sender.send(
            url=row.url,
            secret=row.secret,
            message_id=row.message_id,
            timestamp=timestamp,
            body=body,
        )
        async with self._db.transaction() as conn:
            await repo.record_attempt(
                conn,
                delivery_id,
                status=repo.DELIVERED if outcome.delivered else None,
                attempts=input.attempt,
                error=outcome.error,
            )
        return DeliverNotificationResult(outcome.delivered, outcome.status_code, outcome.error)

    @activity.defn(name="mark_notification")
    @domain_errors
    async def mark_notification(self, input: MarkNotificationInput) -> MarkNotificationResult:
        async with self._db.transaction() as conn:
            updated = await repo.record_attempt(
                conn,
                UUID(input.delivery_id),
                status=input.status,
                attempts=input.attempts,
                error=input.error,
            )
        if updated:
            metrics.NOTIFICATION_DELIVERIES.labels(input.status or "attempt_failed").inc()
        return MarkNotificationResult(updated)
