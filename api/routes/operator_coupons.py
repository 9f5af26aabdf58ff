"""Operators manage the coupon catalog and give a tenant's subscription a discount (ADR 0023)."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status

from api.auth import AuthFirstRoute, OperatorPrincipal, ServicesDep
from api.commands import COMMAND_ERRORS
from api.errors import error_responses
from api.schemas import (
    CouponCreate,
    CouponList,
    CouponOut,
    DiscountApply,
    LifecycleOut,
    PromotionCodeCreate,
    PromotionCodeOut,
)
from services import coupons

router = APIRouter(route_class=AuthFirstRoute, prefix="/api/billing/operator", tags=["operator"])


@router.post(
    "/coupons",
    status_code=status.HTTP_201_CREATED,
    response_model=CouponOut,
    responses=error_responses(401, 403, 409, 422),
)
async def create_coupon(
    body: CouponCreate, principal: OperatorPrincipal, services: ServicesDep
) -> CouponOut:
    """A percentage (1-100) or a fixed amount (with its currency) off the base fee, the overage
    or both, for `once` (one billing period), `repeating` (`duration_periods`) or `forever`;
    optional expiry and maximum redemptions. 409 when the code exists."""
    values = body.model_dump(exclude={"reason"})
    row = await coupons.create_coupon(services, values, principal.actor, body.reason)
    return CouponOut.model_validate(row)


@router.get("/coupons", response_model=CouponList, responses=error_responses(401, 403))
async def list_coupons(_: OperatorPrincipal, services: ServicesDep) -> CouponList:
    return CouponList(
        data=[CouponOut.model_validate(r) for r in await coupons.list_coupons(services)]
    )


@router.post(
    "/coupons/{coupon_code}/promotion-codes",
    status_code=status.HTTP_201_CREATED,
    response_model=PromotionCodeOut,
    responses=error_responses(401, 403, 404, 409, 422),
)
async def create_promotion_code(
    coupon_code: str, body: PromotionCodeCreate, principal: OperatorPrincipal, services: ServicesDep
) -> PromotionCodeOut:
    """A code customers type, pointing at the coupon, with limits of its own."""
    row = await coupons.create_promotion_code(
        services, coupon_code, code=body.code, max_redemptions=body.max_redemptions,
        expires_at=body.expires_at, actor=principal.actor, reason=body.reason,
    )  # fmt: skip
    return PromotionCodeOut.model_validate(row)


@router.post("/tenants/{tenant_id}/discount", response_model=LifecycleOut, responses=COMMAND_ERRORS)
async def apply_discount(
    tenant_id: UUID, body: DiscountApply, principal: OperatorPrincipal, services: ServicesDep
) -> LifecycleOut:
    """Redeem a promotion code on the tenant's live subscription, as the tenant can."""
    result = await coupons.apply(
        services, tenant_id, body.promotion_code, principal.actor, body.reason
    )
    return LifecycleOut.model_validate(result, from_attributes=True)
