"""Temporal payloads of notification sending and the `notification_delivery` workflow
(`notification:{delivery_id}`).

Stored in workflow histories: add fields only with defaults, never rename or remove one while a
running workflow may still replay it. Timestamps are ISO 8601 strings in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workflows.shared_io import RetrySchedule


@dataclass(frozen=True)
class SendNotificationInput:
    """Queue one notification for every endpoint of the tenant and start its deliveries.
    `message_id` is the notification's business identity (e.g. `invoice.paid:{invoice_id}`)."""

    tenant_id: str
    event_type: str
    message_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class SendNotificationResult:
    delivery_ids: list[str]


@dataclass(frozen=True)
class NotificationDeliveryInput:
    """Input of the `notification_delivery` workflow (`notification:{delivery_id}`)."""

    delivery_id: str
    schedule: RetrySchedule


@dataclass(frozen=True)
class NotificationDeliveryResult:
    delivery_id: str
    # delivered | dead_lettered
    status: str
    attempts: int


@dataclass(frozen=True)
class DeliverNotificationInput:
    delivery_id: str
    attempt: int


@dataclass(frozen=True)
class DeliverNotificationResult:
    delivered: bool
    status_code: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class MarkNotificationInput:
    delivery_id: str
    # delivered | dead_lettered; None records a failed attempt.
    status: str | None
    attempts: int
    error: str | None = None


@dataclass(frozen=True)
class MarkNotificationResult:
    updated: bool
