"""Outbound notifications outbox: a notification is a `notification_deliveries` row per enabled
endpoint of the tenant, written in the caller's transaction (so it exists if and only if the
change that caused it committed). Delivery (signing, retry, dead-letter) happens elsewhere."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from sqlalchemy import any_, literal, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import notification_deliveries, notification_endpoints


async def enqueue_notification(
    conn: AsyncConnection,
    *,
    tenant_id: UUID,
    event_type: str,
    message_id: str,
    payload: Mapping[str, Any],
) -> list[UUID]:
    """Queue `event_type` for every enabled endpoint subscribed to it.

    `message_id` is the business identity of the notification (e.g.
    `invoice.paid:{invoice_id}`): it becomes the `webhook-id` header, and a repeated enqueue with
    the same id is a no-op, so retried activities never notify twice. Returns the new rows' ids.
    """
    endpoints = (
        await conn.execute(
            select(notification_endpoints.c.id).where(
                notification_endpoints.c.tenant_id == tenant_id,
                notification_endpoints.c.enabled.is_(True),
                or_(
                    notification_endpoints.c.event_types.is_(None),
                    literal(event_type) == any_(notification_endpoints.c.event_types),
                ),
            )
        )
    ).scalars()
    rows = [
        {
            "tenant_id": tenant_id,
            "endpoint_id": endpoint_id,
            "message_id": message_id,
            "event_type": event_type,
            "payload": dict(payload),
        }
        for endpoint_id in endpoints
    ]
    if not rows:
        return []
    result = await conn.execute(
        insert(notification_deliveries)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["endpoint_id", "message_id"])
        .returning(notification_deliveries.c.id)
    )
    return list(result.scalars())
