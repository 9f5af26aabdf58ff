"""Retry policies and activity option sets shared by every workflow, naming non-retryable
errors in one place."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.common import RetryPolicy

from billing.error_registry import non_retryable_codes

# ApplicationError types that retrying cannot fix: derived from the domain's error registry
# (billing/errors.py), so a new error class is covered the moment it is defined.
NON_RETRYABLE_ERROR_TYPES = list(non_retryable_codes())

STRIPE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
)

# Stripe keeps idempotency keys for about 24 hours: a write retried past that could take effect
# twice, so keyed writes stop retrying well within it; past it, the workflow decides (a later
# collection attempt re-reads the invoice first, with a new attempt number and key).
STRIPE_WRITE_SCHEDULE_TO_CLOSE = timedelta(hours=2)

DB_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=1),
    non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES,
)

# One try of an activity (a Stripe call, a Postgres transaction); the policies above retry it.
ACTIVITY_TIMEOUT = timedelta(seconds=30)


def db_activity(summary: str) -> dict[str, Any]:
    """The option set of a Postgres activity: `call(REF, arg, **db_activity("..."))`."""
    return {
        "start_to_close_timeout": ACTIVITY_TIMEOUT,
        "retry_policy": DB_RETRY,
        "summary": summary,
    }


def stripe_read(task_queue: str, summary: str) -> dict[str, Any]:
    """A Stripe call that cannot take effect twice (a read, or a write idempotent by state), on
    the rate-limited Stripe queue."""
    return {
        "task_queue": task_queue,
        "start_to_close_timeout": ACTIVITY_TIMEOUT,
        "retry_policy": STRIPE_RETRY,
        "summary": summary,
    }


def stripe_write(task_queue: str, summary: str) -> dict[str, Any]:
    """A keyed Stripe write: retried only within the life of its idempotency key."""
    return {
        **stripe_read(task_queue, summary),
        "schedule_to_close_timeout": STRIPE_WRITE_SCHEDULE_TO_CLOSE,
    }
