"""A tenant's notification endpoints (billing.manage): where the engine POSTs signed events."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status

from adapters.db import notification_deliveries as repo
from adapters.db.audit import record_audit
from api.auth import AuthFirstRoute, ManagePrincipal, ReadPrincipal, ServicesDep
from api.errors import NotFound, error_responses
from api.schemas import (
    NotificationEndpointCreate,
    NotificationEndpointCreated,
    NotificationEndpointOut,
)
from billing.standard_webhooks import new_secret

router = APIRouter(
    route_class=AuthFirstRoute, prefix="/api/billing/notification-endpoints", tags=["notifications"]
)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=NotificationEndpointCreated,
    responses=error_responses(401, 403, 422),
)
async def register_endpoint(
    body: NotificationEndpointCreate, principal: ManagePrincipal, services: ServicesDep
) -> NotificationEndpointCreated:
    tenant_id = principal.require_tenant()
    secret = new_secret()
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        endpoint = await repo.create_endpoint(
            conn, tenant_id=tenant_id, url=body.url, secret=secret, event_types=body.event_types
        )
        await record_audit(
            conn,
            actor=principal.actor,
            action="notification_endpoint.created",
            subject_type="notification_endpoint",
            subject_id=str(endpoint.id),
            tenant_id=tenant_id,
            before=None,
            after={"url": body.url, "event_types": body.event_types, "enabled": True},
        )
    return NotificationEndpointCreated(
        id=endpoint.id,
        url=endpoint.url,
        event_types=endpoint.event_types,
        enabled=endpoint.enabled,
        created_at=endpoint.created_at,
        secret=secret,
    )


@router.get("", response_model=list[NotificationEndpointOut], responses=error_responses(401, 403))
async def list_endpoints(
    principal: ReadPrincipal, services: ServicesDep
) -> list[NotificationEndpointOut]:
    tenant_id = principal.require_tenant()
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        rows = await repo.list_endpoints(conn, tenant_id)
    return [NotificationEndpointOut.model_validate(r, from_attributes=True) for r in rows]


@router.delete(
    "/{endpoint_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=error_responses(401, 403, 404),
)
async def disable_endpoint(
    endpoint_id: UUID, principal: ManagePrincipal, services: ServicesDep
) -> None:
    tenant_id = principal.require_tenant()
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        if not await repo.disable_endpoint(conn, tenant_id, endpoint_id):
            raise NotFound(f"no notification endpoint {endpoint_id}")
        await record_audit(
            conn,
            actor=principal.actor,
            action="notification_endpoint.disabled",
            subject_type="notification_endpoint",
            subject_id=str(endpoint_id),
            tenant_id=tenant_id,
            before={"enabled": True},
            after={"enabled": False},
        )
