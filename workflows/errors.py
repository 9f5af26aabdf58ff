"""Domain errors cross the Temporal boundary here, once: a `BillingError` becomes an
`ApplicationError` whose type is the error's stable code, non-retryable unless the error says a
retry can help (and the shared list agrees: `billing.errors.non_retryable_codes()`).

`domain_errors` applies that to a whole function. Every activity carries it (a test checks the
worker's registrations), and so does every update validator of the subscription workflow, so a
refused command reaches the caller under the same code an activity would use."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, cast

from temporalio.exceptions import ActivityError, ApplicationError

from billing.errors import BillingError

F = TypeVar("F", bound=Callable[..., Any])


def to_application_error(error: BillingError) -> ApplicationError:
    # The retry policies' list derives from the same flag (billing.errors.non_retryable_codes).
    return ApplicationError(str(error), type=error.code, non_retryable=not error.retryable)


def refusal_reason(err: ActivityError) -> str:
    """Why an activity failed for good, in words: its application error's message (a Stripe
    refusal, say), or the error itself."""
    cause = err.cause
    return cause.message if isinstance(cause, ApplicationError) else str(err)


def domain_errors(fn: F) -> F:
    """`fn`, raising `to_application_error(e)` for any `BillingError` e (sync or async)."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except BillingError as error:
                raise to_application_error(error) from error

        async_wrapper.translates_domain_errors = True  # type: ignore[attr-defined]
        return cast(F, async_wrapper)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BillingError as error:
            raise to_application_error(error) from error

    wrapper.translates_domain_errors = True  # type: ignore[attr-defined]
    return cast(F, wrapper)
