"""The domain's error classes by code, once every module that defines one is imported: what
crosses Temporal as an `ApplicationError` type is decoded here, and the retry policies' list of
codes not to retry is derived here from the classes' `retryable` flags."""

from __future__ import annotations

import billing.coupons  # noqa: F401 - defines CouponRefused
import billing.credit_notes  # noqa: F401 - defines CreditRefused
import billing.dunning  # noqa: F401 - defines InvalidDunningPolicy
import billing.payments  # noqa: F401 - defines the Stripe errors
from billing import errors
from billing.errors import BillingError

# Types older code recorded for a refusal (the class name, before codes crossed the boundary).
ALIASES = {"InvalidTransition": "invalid_transition"}


def registered() -> dict[str, type[BillingError]]:
    """Every error class by code, once every module that defines one is imported."""
    return dict(errors.REGISTRY)


def decode(code: str | None, message: str) -> BillingError | None:
    """The domain error an `ApplicationError` of type `code` stands for; None for a type no
    domain class names (an infrastructure failure)."""
    cls = registered().get(ALIASES.get(code or "", code or ""))
    return cls.from_message(message) if cls is not None else None


def non_retryable_codes() -> tuple[str, ...]:
    """The codes retrying cannot fix (bad request, bad credentials, business rule): the
    non-retryable ApplicationError types of every retry policy. Only transient Stripe failures
    and infrastructure errors are retried."""
    return tuple(sorted(code for code, cls in registered().items() if not cls.retryable))
