"""Errors activities raise: domain errors cross the boundary through `domain_errors`
(workflows/errors.py, shared with the workflows' validators); `foreign_row` is the one error an
activity raises itself."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from billing.errors import TenantMismatch
from workflows.errors import domain_errors, to_application_error

__all__ = ["domain_errors", "foreign_row", "to_application_error"]


def foreign_row(what: str, key: str) -> ApplicationError:
    """A key the input names is held by another tenant's row (RLS hid it from this tenant's
    transaction): never retryable, and the message names only what the caller sent."""
    return ApplicationError(
        f"{what} {key!r} is not this tenant's", type=TenantMismatch.code, non_retryable=True
    )
