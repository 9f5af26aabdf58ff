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

# Seconds a client is asked to wait before retrying (`Retry-After`).
RETRY_AFTER_SECONDS = 5


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def invalid_data(error: BaseException) -> asyncpg.DataError | None:
    """Postgres refused a value the caller sent (SQLSTATE class 22: a NUL character, a number
    out of range, text too long for its column): the caller's error, a 4xx, never a 500."""
    for item in _chain(error):
        if isinstance(item, asyncpg.DataError):
            return item
    return None


def is_unavailable(error: BaseException) -> bool:
    """True when `error`, or an error it was raised from, says Postgres cannot be reached."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, UNAVAILABLE_TYPES):
            return True
        if isinstance(current, sa.DBAPIError) and current.connection_invalidated:
            return True
        current = current.__cause__ or current.__context__
    return False
