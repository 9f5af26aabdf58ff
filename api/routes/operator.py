"""Operator endpoints: tenants and their API keys (operator scope only; audited)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Query, status

from adapters.api_keys import display_prefix, generate_key, hash_key
from adapters.db import tenants as tenant_repo
from adapters.db.audit import record_audit
from api.auth import AuthFirstRoute, OperatorPrincipal, ServicesDep, key_cache
from api.errors import NotFound, error_responses
from api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut, TenantCreate, TenantOut

router = APIRouter(route_class=AuthFirstRoute, prefix="/api/billing/operator", tags=["operator"])


@router.post(
    "/tenants",
    status_code=status.HTTP_201_CREATED,
    response_model=TenantOut,
    responses=error_responses(401, 403, 422),
)
async def create_tenant(
    body: TenantCreate, principal: OperatorPrincipal, services: ServicesDep
) -> TenantOut:
    async with services.system_db.transaction() as conn:
        tenant = await tenant_repo.create_tenant(conn, name=body.name, email=body.email)
        await record_audit(
            conn,
            actor=principal.actor,
            action="tenant.created",
            subject_type="tenant",
            subject_id=str(tenant.id),
            tenant_id=tenant.id,
            before=None,
            after={"name": body.name, "access_status": tenant.access_status},
            details={"reason": body.reason},
        )
    return TenantOut.model_validate(tenant, from_attributes=True)


@router.get(
    "/tenants/{tenant_id}", response_model=TenantOut, responses=error_responses(401, 403, 404)
)
async def get_tenant(tenant_id: UUID, _: OperatorPrincipal, services: ServicesDep) -> TenantOut:
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        tenant = await tenant_repo.get_tenant(conn, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}")
    return TenantOut.model_validate(tenant, from_attributes=True)


@router.post(
    "/tenants/{tenant_id}/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=error_responses(401, 403, 404, 422),
)
async def issue_api_key(
    tenant_id: UUID, body: ApiKeyCreate, principal: OperatorPrincipal, services: ServicesDep
) -> ApiKeyCreated:
    key = generate_key()
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        if await tenant_repo.get_tenant(conn, tenant_id) is None:
            raise NotFound(f"no tenant {tenant_id}")
        scopes = sorted({str(s) for s in body.scopes})
        row = await tenant_repo.insert_api_key(
            conn,
            tenant_id=tenant_id,
            name=body.name,
            prefix=display_prefix(key),
            key_hash=hash_key(key, services.settings.api_key_pepper.get_secret_value()),
            scopes=scopes,
            created_by=principal.actor,
        )
        await record_audit(
            conn,
            actor=principal.actor,
            action="api_key.created",
            subject_type="api_key",
            subject_id=str(row.id),
            tenant_id=tenant_id,
            before=None,
            after={"scopes": scopes, "name": body.name},
            details={"reason": body.reason},
        )
    return ApiKeyCreated(
        **ApiKeyOut.model_validate(row, from_attributes=True).model_dump(), key=key
    )


@router.get(
    "/tenants/{tenant_id}/api-keys",
    response_model=list[ApiKeyOut],
    responses=error_responses(401, 403, 404),
)
async def list_api_keys(
    tenant_id: UUID, _: OperatorPrincipal, services: ServicesDep
) -> list[ApiKeyOut]:
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        if await tenant_repo.get_tenant(conn, tenant_id) is None:
            raise NotFound(f"no tenant {tenant_id}")
        rows = await tenant_repo.list_api_keys(conn, tenant_id)
    return [ApiKeyOut.model_validate(r, from_attributes=True) for r in rows]


@router.delete(
    "/api-keys/{key_id}", response_model=ApiKeyOut, responses=error_responses(401, 403, 404)
)
async def revoke_api_key(
    key_id: UUID,
    principal: OperatorPrincipal,
    services: ServicesDep,
    reason: str | None = Query(None, max_length=500, description="kept in the audit row"),
) -> ApiKeyOut:
    async with services.system_db.transaction() as conn:
        row = await tenant_repo.revoke_api_key(conn, key_id)
        if row is None:
            raise NotFound(f"no API key {key_id}")
        await record_audit(
            conn,
            actor=principal.actor,
            action="api_key.revoked",
            subject_type="api_key",
            subject_id=str(key_id),
            tenant_id=row.tenant_id,
            before={"revoked": False},
            after={"revoked": True},
            details={"reason": reason},
        )
    # This process stops accepting the key now; other API processes within the cache TTL.
    key_cache(services).forget(key_id)
    return ApiKeyOut.model_validate(row, from_attributes=True)
