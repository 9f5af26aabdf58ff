"""The non-retryable list (billing/errors.py, used by every retry policy) agrees with the error
classes: every domain error that retrying cannot fix is on it, every retryable one is not, and
the list names no code that nothing raises."""

from __future__ import annotations

import billing.dunning  # noqa: F401 - registers its error class
import billing.payments  # noqa: F401 - registers the Stripe error classes
from billing.errors import NON_RETRYABLE_CODES, BillingError

# Raised as ApplicationError types directly (activities/errors.py), not as domain classes.
ACTIVITY_ONLY_CODES = {"tenant_mismatch"}


def _classes() -> list[type[BillingError]]:
    found: list[type[BillingError]] = []
    pending: list[type[BillingError]] = [BillingError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_each_error_class_is_retried_exactly_when_its_flag_says() -> None:
    for cls in _classes():
        retryable = bool(getattr(cls, "retryable", False))
        assert (cls.code in NON_RETRYABLE_CODES) is not retryable, cls


def test_the_list_names_only_codes_that_are_raised() -> None:
    codes = {cls.code for cls in _classes()} | ACTIVITY_ONLY_CODES
    assert set(NON_RETRYABLE_CODES) <= codes, set(NON_RETRYABLE_CODES) - codes
    assert len(NON_RETRYABLE_CODES) == len(set(NON_RETRYABLE_CODES))
