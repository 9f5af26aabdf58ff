"""The coupon catalog and discounts on subscriptions (ADR 0023): operators create coupons and
promotion codes; a promotion code is redeemed at sign-up (`services.subscriptions.create`) or
later, by the tenant or an operator, here."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from adapters.db import coupons as repo
from adapters.db.audit import record_audit
from billing.coupons import discount_of
from services.commands import StillRunning, apply_before, command, live_subscription
from services.context import Services
from services.errors import Conflict, NotFound
from workflows.subscription import SubscriptionWorkflow
from workflows.subscription.carry import discount_out
from workflows.subscription_io import ApplyDiscountRequest, LifecycleResult


async def create_coupon(
    services: Services, values: dict[str, Any], actor: str, reason: str | None
) -> dict[str, Any]:
    async with services.system_db.transaction() as conn:  # the catalog: no tenant
        row = await repo.create_coupon(conn, {**values, "actor": actor})
        if row is None:
            raise Conflict(f"a coupon {values['code']!r} exists already")
        await record_audit(
            conn, actor=actor, action="coupon.created", subject_type="coupon",
            subject_id=row["code"], tenant_id=None, before=None, after=_catalog(row),
            details={"reason": reason},
        )  # fmt: skip
    return row


async def list_coupons(services: Services) -> list[dict[str, Any]]:
    async with services.system_db.transaction() as conn:  # the catalog: no tenant
        return await repo.list_coupons(conn)


async def create_promotion_code(
    services: Services,
    coupon_code: str,
    *,
    code: str,
    max_redemptions: int | None,
    expires_at: datetime | None,
    actor: str,
    reason: str | None,
) -> dict[str, Any]:
    async with services.system_db.transaction() as conn:  # the catalog: no tenant
        coupon = await repo.coupon_by_code(conn, coupon_code)
        if coupon is None:
            raise NotFound(f"no coupon {coupon_code!r}")
        row = await repo.create_promotion_code(
            conn,
            {"code": code, "coupon_id": coupon["id"], "max_redemptions": max_redemptions,
             "expires_at": expires_at, "actor": actor},
        )  # fmt: skip
        if row is None:
            raise Conflict(f"a promotion code {code!r} exists already")
        await record_audit(
            conn, actor=actor, action="promotion_code.created", subject_type="promotion_code",
            subject_id=code, tenant_id=None, before=None, after=_catalog(row),
            details={"coupon": coupon_code, "reason": reason},
        )  # fmt: skip
    return {**row, "coupon_code": coupon_code}


async def apply(
    services: Services,
    tenant_id: UUID,
    promotion_code: str,
    actor: str,
    reason: str | None = None,
) -> LifecycleResult:
    """Redeem the code and give the live subscription its discount from the next period on. A
    subscription that refuses it (one active discount at a time) gives the redemption back."""
    live = await live_subscription(services, tenant_id)
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        coupon = await repo.redeem(conn, promotion_code, services.clock())
        discount = discount_of(coupon, live.currency)
    payload = discount_out(discount)
    assert payload is not None
    request = ApplyDiscountRequest(payload, actor, apply_before(services), reason)
    try:
        return await command(
            services, tenant_id, live.workflow_id, SubscriptionWorkflow.apply_discount, request
        )
    except StillRunning:
        # Accepted: the subscription applies the discount, so the redemption stands. (Given
        # back here, a code limited to N could discount more than N subscriptions.)
        raise
    except Exception:
        # Refused, or never accepted (a request not accepted in time is refused by the
        # workflow's deadline, ADR 0002): nothing was applied.
        async with services.tenant_db.tenant_transaction(tenant_id) as conn:
            await repo.give_back(conn, promotion_code, coupon["id"])
        raise


def _catalog(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, UUID) else v)
        for k, v in row.items()
        if k not in ("created_at",)
    }
