"""The non-retryable list (billing/errors.py, used by every retry policy) agrees with the error
classes: every domain error that retrying cannot fix is on it, every retryable one is not, and
the list names no code that nothing raises."""

from __future__ import annotations

import pytest

import billing.dunning  # noqa: F401 - registers its error class
import billing.payments  # noqa: F401 - registers the Stripe error classes
from billing.error_registry import decode, non_retryable_codes, registered
from billing.errors import BillingError, InvalidTransition
from workflows.retry import DB_RETRY, STRIPE_RETRY


def _classes() -> list[type[BillingError]]:
    found: list[type[BillingError]] = []
    pending: list[type[BillingError]] = [BillingError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_class_with_a_code_is_registered_under_it() -> None:
    registry = registered()
    for cls in _classes():
        assert registry[cls.code] is cls or cls.code not in vars(cls), cls
    assert len({cls.code for cls in _classes() if "code" in vars(cls)}) == len(registry)


def test_a_code_can_name_one_class_only() -> None:
    with pytest.raises(TypeError, match="taken"):

        class Twin(BillingError):  # noqa: F841 - defined to be refused
            code = "invalid_transition"


def test_the_non_retryable_list_is_every_class_whose_flag_says_so() -> None:
    codes = non_retryable_codes()
    for cls in _classes():
        assert (cls.code in codes) is not cls.retryable, cls
    assert "stripe_transient" not in codes
    assert {"invalid_transition", "tenant_mismatch", "invalid_dunning_policy"} <= set(codes)
    for policy in (DB_RETRY, STRIPE_RETRY):
        assert list(policy.non_retryable_error_types or []) == list(codes)


@pytest.mark.parametrize("code", ["invalid_transition", "InvalidTransition"])
def test_decoding_a_type_gives_its_class_and_message(code: str) -> None:
    error = decode(code, "cannot pause a trialing subscription")
    assert isinstance(error, InvalidTransition)
    assert error.message == "cannot pause a trialing subscription"
    assert decode("stripe_card_rejected", "no").__class__ is billing.payments.StripeCardRejected
    assert decode("WorkerCrashed", "boom") is None
    assert decode(None, "boom") is None
