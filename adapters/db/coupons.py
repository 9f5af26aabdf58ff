"""The coupon catalog and its redemptions (ADR 0023). A redemption is one conditional UPDATE per
row (the promotion code's, then the coupon's) that checks expiry and the limit in the statement
itself: concurrent sign-ups can never redeem past a limit, and a refused one changes nothing
(the caller's transaction rolls back)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import coupons, promotion_codes
from billing.coupons import CouponRefused


async def create_coupon(conn: AsyncConnection, values: dict[str, Any]) -> dict[str, Any] | None:
    """None when the code is taken."""
    row = (
        await conn.execute(
            insert(coupons)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["code"])
            .returning(*coupons.c)
        )
    ).first()
    return dict(row._mapping) if row else None


async def list_coupons(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(select(coupons).order_by(coupons.c.created_at, coupons.c.code))
    return [dict(r._mapping) for r in rows]


async def coupon_by_code(conn: AsyncConnection, code: str) -> dict[str, Any] | None:
    row = (await conn.execute(select(coupons).where(coupons.c.code == code))).first()
    return dict(row._mapping) if row else None


async def create_promotion_code(
    conn: AsyncConnection, values: dict[str, Any]
) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            insert(promotion_codes)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["code"])
            .returning(*promotion_codes.c)
        )
    ).first()
    return dict(row._mapping) if row else None


def _open(table: Any, now: datetime) -> Any:
    return (
        or_(table.c.expires_at.is_(None), table.c.expires_at > now),
        or_(table.c.max_redemptions.is_(None), table.c.redemptions < table.c.max_redemptions),
    )


async def redeem(conn: AsyncConnection, promotion_code: str, now: datetime) -> dict[str, Any]:
    """Count one redemption of the promotion code and of its coupon; the coupon. Raises
    `CouponRefused` (unknown, inactive, expired or used up) with nothing counted."""
    promo = (
        await conn.execute(
            update(promotion_codes)
            .where(
                promotion_codes.c.code == promotion_code,
                promotion_codes.c.active.is_(True),
                *_open(promotion_codes, now),
            )
            .values(redemptions=promotion_codes.c.redemptions + 1)
            .returning(promotion_codes.c.coupon_id)
        )
    ).first()
    if promo is None:
        raise CouponRefused(f"promotion code {promotion_code!r} is unknown, expired or used up")
    coupon = (
        await conn.execute(
            update(coupons)
            .where(coupons.c.id == promo.coupon_id, *_open(coupons, now))
            .values(redemptions=coupons.c.redemptions + 1)
            .returning(*coupons.c)
        )
    ).first()
    if coupon is None:
        raise CouponRefused(
            f"the coupon of promotion code {promotion_code!r} is expired or used up"
        )
    return dict(coupon._mapping)


async def give_back(conn: AsyncConnection, promotion_code: str, coupon_id: UUID) -> None:
    """Undo one redemption the subscription refused after all (it had a discount already)."""
    await conn.execute(
        update(promotion_codes)
        .where(promotion_codes.c.code == promotion_code, promotion_codes.c.redemptions > 0)
        .values(redemptions=promotion_codes.c.redemptions - 1)
    )
    await conn.execute(
        update(coupons)
        .where(coupons.c.id == coupon_id, coupons.c.redemptions > 0)
        .values(redemptions=coupons.c.redemptions - 1)
    )
