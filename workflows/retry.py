"""Retry policies and activity option sets shared by every workflow, naming non-retryable
errors in one place."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.common import Priority, RetryPolicy

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


# Task-queue priority keys (ADR 0014): lower is dispatched first when a queue has a backlog;
# unset means 3. A customer waiting on an answer goes first, then money already owed, then the
# bulk of a billing day.
CUSTOMER = 1  # commands: plan changes, a new card, cancel, pause, resume
DUNNING = 2  # dunning retries, and what a dunning run does
DEFAULT = 3
BULK = 4  # period boundaries: renewals, trial ends, scheduled changes


def lane(key: int, tenant_id: str) -> Priority:
    """A priority with the tenant as the fairness key: within one priority, the server shares
    dispatch between tenants, so one tenant's thousands of renewals do not starve the others."""
    return Priority(priority_key=key, fairness_key=tenant_id)


def _with(options: dict[str, Any], priority: Priority | None) -> dict[str, Any]:
    if priority is not None:
        options["priority"] = priority
    return options


def db_activity(summary: str, priority: Priority | None = None) -> dict[str, Any]:
    """The option set of a Postgres activity: `call(REF, arg, **db_activity("..."))`. Without
    a priority, the activity inherits its workflow's."""
    return _with(
        {
            "start_to_close_timeout": ACTIVITY_TIMEOUT,
            "retry_policy": DB_RETRY,
            "summary": summary,
        },
        priority,
    )


def local_db_activity(summary: str) -> dict[str, Any]:
    """The option set of a Postgres step run as a local activity (ADR 0025): in the worker
    that holds the workflow task, recorded as a marker, no task queue (so no priority). Only
    for short writes that are idempotent by an id or a version the workflow chose, since a
    worker that dies before the task completes runs them again."""
    return {
        "start_to_close_timeout": ACTIVITY_TIMEOUT,
        "retry_policy": DB_RETRY,
        "summary": summary,
    }


def stripe_read(task_queue: str, summary: str, priority: Priority | None = None) -> dict[str, Any]:
    """A Stripe call that cannot take effect twice (a read, or a write idempotent by state), on
    the rate-limited Stripe queue."""
    return _with(
        {
            "task_queue": task_queue,
            "start_to_close_timeout": ACTIVITY_TIMEOUT,
            "retry_policy": STRIPE_RETRY,
            "summary": summary,
        },
        priority,
    )


def stripe_write(task_queue: str, summary: str, priority: Priority | None = None) -> dict[str, Any]:
    """A keyed Stripe write: retried only within the life of its idempotency key."""
    return {
        **stripe_read(task_queue, summary, priority),
        "schedule_to_close_timeout": STRIPE_WRITE_SCHEDULE_TO_CLOSE,
    }
