"""Domain errors become Temporal ApplicationErrors here, once, with the domain's stable code as
the error type; whether a retry can help is decided by the shared non-retryable list."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from billing.errors import NON_RETRYABLE_CODES, BillingError


def foreign_row(what: str, key: str) -> ApplicationError:
    """A key the input names is held by another tenant's row (RLS hid it from this tenant's
    transaction): never retryable, and the message names only what the caller sent."""
    return ApplicationError(
        f"{what} {key!r} is not this tenant's", type="tenant_mismatch", non_retryable=True
    )


def to_application_error(error: BillingError) -> ApplicationError:
    retryable = bool(getattr(error, "retryable", False))
    # The shared list and the error's own flag agree for every class (test_error_codes.py).
    return ApplicationError(
        str(error),
        type=error.code,
        non_retryable=not retryable or error.code in NON_RETRYABLE_CODES,
    )
