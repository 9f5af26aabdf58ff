"""Retry policies shared by every workflow, naming non-retryable errors in one place."""

from __future__ import annotations

from datetime import timedelta

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
