"""Operator endpoints for a tenant's API rate limits (ADR 0012): read the limits in force and
override one class (audited, with before and after)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter

from adapters.db import rate_limits as repo
from adapters.db import tenants as tenant_repo
from adapters.db.audit import record_audit
from api.auth import AuthFirstRoute, OperatorPrincipal, ServicesDep
from api.errors import NotFound, error_responses
from api.schemas import RateLimitOverride, RateLimitsOut
from services import rate_limits
from services.context import Services

router = APIRouter(route_class=AuthFirstRoute, prefix="/api/billing/operator", tags=["operator"])


async def _limits(services: Services, tenant_id: UUID) -> RateLimitsOut:
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        if await tenant_repo.get_tenant(conn, tenant_id) is None:
            raise NotFound(f"no tenant {tenant_id}")
        overrides = await repo.list_overrides(conn, tenant_id)
    return RateLimitsOut(
        window_seconds=services.settings.rate_limit_window_seconds,
        limits={
            cls: overrides.get(cls, rate_limits.default_limit(services, cls))
            for cls in rate_limits.ROUTE_CLASSES
        },
        overridden=sorted(overrides),
    )


@router.get(
    "/tenants/{tenant_id}/rate-limits",
    response_model=RateLimitsOut,
    responses=error_responses(401, 403, 404),
)
async def get_rate_limits(
    tenant_id: UUID, _: OperatorPrincipal, services: ServicesDep
) -> RateLimitsOut:
    return await _limits(services, tenant_id)


@router.put(
    "/tenants/{tenant_id}/rate-limits",
    response_model=RateLimitsOut,
    responses=error_responses(401, 403, 404, 422),
)
async def set_rate_limit(
    tenant_id: UUID, body: RateLimitOverride, principal: OperatorPrincipal, services: ServicesDep
) -> RateLimitsOut:
    """Override one route class's limit for the tenant (`per_window`: requests per window;
    null returns the class to the default). Every API process applies it within
    `BILLING_API_KEY_CACHE_SECONDS`; this one at once."""
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        if await tenant_repo.get_tenant(conn, tenant_id) is None:
            raise NotFound(f"no tenant {tenant_id}")
        before = await repo.set_override(
            conn, tenant_id, body.route_class, body.per_window, principal.actor
        )
        await record_audit(
            conn,
            actor=principal.actor,
            action="tenant.rate_limit_set",
            subject_type="tenant",
            subject_id=str(tenant_id),
            tenant_id=tenant_id,
            before={"route_class": body.route_class, "per_window": before},
            after={"route_class": body.route_class, "per_window": body.per_window},
            details={
                "route_class": body.route_class,
                "reason": body.reason,
            },
        )
    rate_limits.limiter(services).forget_overrides(tenant_id)
    return await _limits(services, tenant_id)
