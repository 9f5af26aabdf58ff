"""The one definition of "the database is unavailable", as opposed to a bug in a query.

Every caller that must answer differently when Postgres cannot be reached (the API's 503 with
`Retry-After`, the webhook endpoint, usage ingestion, the quota check) asks `is_unavailable`."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import exc as sa

# Raised while connecting, on a connection the server dropped, or when no pooled connection
# could be had in time.
UNAVAILABLE_TYPES: tuple[type[Exception], ...] = (
    OSError,  # ConnectionRefusedError, ConnectionResetError, socket errors
    TimeoutError,
    sa.OperationalError,
    sa.InterfaceError,
    sa.TimeoutError,  # pool checkout
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,  # the server is starting up or shutting down
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)

# Any error a statement can raise, whether through SQLAlchemy or a bare asyncpg connection: for
# callers that must carry on when a follow-up step fails (the step is made up later).
STATEMENT_ERRORS: tuple[type[Exception], ...] = (
    *UNAVAILABLE_TYPES,
    sa.DBAPIError,
    asyncpg.PostgresError,
)

# A transaction that lost a race (deadlock, serialization failure): running it again is safe
# when the statement was the whole transaction.
_RETRYABLE_SQLSTATES = {"40P01", "40001"}

# Raised by a unique index: a concurrent request wrote the same row first.
UniqueViolation = sa.IntegrityError


def lost_a_race(error: BaseException) -> bool:
    return isinstance(error, asyncpg.PostgresError) and error.sqlstate in _RETRYABLE_SQLSTATES


# Seconds a client is asked to wait before retrying (`Retry-After`).
RETRY_AFTER_SECONDS = 5


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


DataError = asyncpg.DataError


def invalid_data(error: BaseException) -> asyncpg.DataError | None:
    """Postgres refused a value the caller sent (SQLSTATE class 22: a NUL character, a number
    out of range, text too long for its column): the caller's error, a 4xx, never a 500."""
    for item in _chain(error):
        if isinstance(item, asyncpg.DataError):
            return item
    return None


def is_unavailable(error: BaseException) -> bool:
    """True when `error`, or an error it was raised from, says Postgres cannot be reached."""
    return any(
        isinstance(item, UNAVAILABLE_TYPES)
        or (isinstance(item, sa.DBAPIError) and item.connection_invalidated)
        for item in _chain(error)
    )
