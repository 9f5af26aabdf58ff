"""Notification endpoints and delivery rows (worker role for deliveries; the API registers
endpoints in the tenant's RLS transaction). Repositories never commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import notification_deliveries, notification_endpoints

PENDING = "pending"
DELIVERED = "delivered"
DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class Endpoint:
    id: UUID
    tenant_id: UUID
    url: str
    event_types: list[str] | None
    enabled: bool
    created_at: datetime


@dataclass(frozen=True)
class DeliveryToSend:
    id: UUID
    status: str
    message_id: str
    event_type: str
    payload: dict[str, Any]
    created_at: datetime
    url: str
    secret: str
    enabled: bool


_ENDPOINT_COLUMNS = (
    notification_endpoints.c.id,
    notification_endpoints.c.tenant_id,
    notification_endpoints.c.url,
    notification_endpoints.c.event_types,
    notification_endpoints.c.enabled,
    notification_endpoints.c.created_at,
)


async def create_endpoint(
    conn: AsyncConnection,
    *,
    tenant_id: UUID,
    url: str,
    secret: str,
    event_types: Sequence[str] | None,
) -> Endpoint:
    row = (
        await conn.execute(
            notification_endpoints.insert()
            .values(
                tenant_id=tenant_id,
                url=url,
                secret=secret,
                event_types=list(event_types) if event_types is not None else None,
            )
            .returning(*_ENDPOINT_COLUMNS)
        )
    ).one()
    return Endpoint(**row._mapping)


async def list_endpoints(conn: AsyncConnection, tenant_id: UUID) -> list[Endpoint]:
    rows = await conn.execute(
        select(*_ENDPOINT_COLUMNS)
        .where(notification_endpoints.c.tenant_id == tenant_id)
        .order_by(notification_endpoints.c.created_at)
    )
    return [Endpoint(**r._mapping) for r in rows]


async def disable_endpoint(conn: AsyncConnection, tenant_id: UUID, endpoint_id: UUID) -> bool:
    result = await conn.execute(
        update(notification_endpoints)
        .where(
            notification_endpoints.c.id == endpoint_id,
            notification_endpoints.c.tenant_id == tenant_id,
        )
        .values(enabled=False, updated_at=func.now())
    )
    return result.rowcount == 1


async def delivery_to_send(conn: AsyncConnection, delivery_id: UUID) -> DeliveryToSend | None:
    row = (
        await conn.execute(
            select(
                notification_deliveries.c.id,
                notification_deliveries.c.status,
                notification_deliveries.c.message_id,
                notification_deliveries.c.event_type,
                notification_deliveries.c.payload,
                notification_deliveries.c.created_at,
                notification_endpoints.c.url,
                notification_endpoints.c.secret,
                notification_endpoints.c.enabled,
            )
            .join(
                notification_endpoints,
                notification_endpoints.c.id == notification_deliveries.c.endpoint_id,
            )
            .where(notification_deliveries.c.id == delivery_id)
        )
    ).first()
    return DeliveryToSend(**row._mapping) if row is not None else None


async def record_attempt(
    conn: AsyncConnection,
    delivery_id: UUID,
    *,
    status: str | None,
    attempts: int,
    error: str | None,
) -> bool:
    values: dict[str, Any] = {"attempts": attempts, "last_error": error, "updated_at": func.now()}
    if status is not None:
        values["status"] = status
        if status == DELIVERED:
            values["delivered_at"] = func.now()
    result = await conn.execute(
        update(notification_deliveries)
        .where(
            notification_deliveries.c.id == delivery_id,
            # A delivered notification stays delivered, whatever a late retry reports.
            notification_deliveries.c.status != DELIVERED,
        )
        .values(values)
    )
    return result.rowcount == 1


async def claim_unstarted(
    conn: AsyncConnection, *, limit: int, min_age_seconds: float
) -> list[UUID]:
    rows = await conn.execute(
        select(notification_deliveries.c.id)
        .where(
            notification_deliveries.c.status == PENDING,
            notification_deliveries.c.started_at.is_(None),
            notification_deliveries.c.created_at
            < func.now() - text("make_interval(secs => :age)").bindparams(age=min_age_seconds),
        )
        .order_by(notification_deliveries.c.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows.scalars())


async def mark_started(conn: AsyncConnection, delivery_id: UUID) -> None:
    await conn.execute(
        update(notification_deliveries)
        .where(
            notification_deliveries.c.id == delivery_id,
            notification_deliveries.c.started_at.is_(None),
        )
        .values(started_at=func.now())
    )


async def pending_ids_for_message(
    conn: AsyncConnection, tenant_id: UUID, message_id: str
) -> list[UUID]:
    rows = await conn.execute(
        select(notification_deliveries.c.id).where(
            notification_deliveries.c.tenant_id == tenant_id,
            notification_deliveries.c.message_id == message_id,
            notification_deliveries.c.status == PENDING,
        )
    )
    return list(rows.scalars())
