"""Coupons (ADR 0023), pure: a catalog row as the discount a subscription carries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from billing.discounts import Discount
from billing.errors import BillingError


class CouponRefused(BillingError):
    """A promotion code that is unknown, inactive, expired or used up, or a coupon in another
    currency than the plan's."""

    code: ClassVar[str] = "coupon_refused"


def discount_of(coupon: Mapping[str, Any], currency: str) -> Discount:
    """The discount a redeemed coupon gives a subscription billed in `currency`."""
    if coupon["amount_off"] is not None and coupon["currency"] != currency:
        raise CouponRefused(
            f"coupon {coupon['code']} is in {coupon['currency']}, the plan bills in {currency}"
        )
    periods = {"once": 1, "repeating": coupon["duration_periods"], "forever": None}[
        coupon["duration"]
    ]
    return Discount(
        code=coupon["code"],
        percent_off=coupon["percent_off"],
        amount_off=coupon["amount_off"],
        applies_to=coupon["applies_to"],
        periods=periods,
    )
