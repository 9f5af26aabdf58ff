"""Domain errors become Temporal ApplicationErrors here, once, with the domain's stable code as
the error type; whether a retry can help is decided by the shared non-retryable list."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from billing.errors import BillingError
from workflows.retry import NON_RETRYABLE_ERROR_TYPES


def to_application_error(error: BillingError) -> ApplicationError:
    retryable = bool(getattr(error, "retryable", False))
    # The shared list and the error's own flag must agree; a test checks every error class.
    return ApplicationError(
        str(error),
        type=error.code,
        non_retryable=not retryable or error.code in NON_RETRYABLE_ERROR_TYPES,
    )
