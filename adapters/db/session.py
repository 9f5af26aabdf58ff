"""Database access: one async engine per role, one transaction per unit of work.

`tenant_transaction` is the only way work done for one tenant touches its data: it sets
`app.tenant_id` for that transaction only (SET LOCAL semantics), so a pooled connection never
carries one tenant's identity into another request, and it runs the transaction as a role that
row-level security applies to. The API's app role is such a role. The worker's login is BYPASSRLS
(it has cross-tenant jobs: the inbox, the re-dispatchers, reconciliation), so its `Database` is
built with `scoped_role`, and each tenant transaction switches to that NOBYPASSRLS role with
`SET LOCAL ROLE`: a write with another tenant's ids then matches no row, or is refused by the
policy's WITH CHECK, whatever the query says.
Repositories receive the connection and never commit; the context manager commits on success.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import UUID

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

# The connection repositories take: what activities and routes may name without building SQL.
Connection = AsyncConnection

SET_TENANT = text("SELECT set_config('app.tenant_id', :tenant_id, true)")
CONNECT_TIMEOUT_SECONDS = 5.0
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")


class Database:
    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        application_name: str = "billing",
        scoped_role: str | None = None,
    ):
        if scoped_role is not None and not _ROLE_NAME.match(scoped_role):
            raise ValueError(f"not a role name: {scoped_role!r}")
        # One statement, one round trip: `set_config('role', ...)` is `SET LOCAL ROLE`, checked
        # the same way (the login must be a member of the role).
        self._enter_tenant = (
            text(
                "SELECT set_config('role', :role, true), "
                "set_config('app.tenant_id', :tenant_id, true)"
            ).bindparams(role=scoped_role)
            if scoped_role
            else SET_TENANT
        )
        self._pool_size = pool_size
        self._application_name = application_name
        self._raw_pools: dict[str, Any] = {}
        self._raw_pool_lock = asyncio.Lock()
        self.engine: AsyncEngine = create_async_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_pre_ping=False,
            # An unreachable server fails a request in seconds (a 503), not after asyncpg's
            # default minute, and a saturated pool does the same after `pool_timeout`.
            pool_timeout=CONNECT_TIMEOUT_SECONDS,
            connect_args={
                "server_settings": {"application_name": application_name},
                "timeout": CONNECT_TIMEOUT_SECONDS,
            },
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction with no tenant set, as the login role: for work that really spans
        tenants (the inbox, re-dispatchers, sweepers, reconciliation, key lookup, operator
        tenant admin). Work for one tenant uses `tenant_transaction` (a test lists the
        activities allowed here, with the reason)."""
        async with self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def tenant_transaction(self, tenant_id: UUID) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as conn:
            await conn.execute(self._enter_tenant, {"tenant_id": str(tenant_id)})
            yield conn

    @property
    def connections(self) -> int:
        """How many connections the engine's pool hands out at most (its size and overflow):
        more concurrent users than this wait for one, and fail after `pool_timeout`."""
        return 2 * self._pool_size

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    def asyncpg_dsn(self) -> str:
        """This role's URL as a plain asyncpg DSN (for connections outside SQLAlchemy)."""
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    async def raw_pool(self, purpose: str = "requests") -> Any:
        """A small asyncpg pool beside the SQLAlchemy engine, for hot single-statement work (the
        quota check, the webhook insert): SQLAlchemy's checkout, greenlet hop and reset-on-return
        cost more than the query (ADR 0003). One pool per `purpose`, so background work (the
        webhook dispatch queue's routing, ADR 0024) never holds the connections a request waits
        for. Created on first use; nothing may leave session state on these connections, so
        release skips asyncpg's reset round trip."""
        async with self._raw_pool_lock:
            if purpose not in self._raw_pools:
                self._raw_pools[purpose] = await asyncpg.create_pool(
                    self.asyncpg_dsn(),
                    min_size=1,
                    max_size=self._pool_size,
                    server_settings={"application_name": self._application_name},
                    reset=_no_reset,
                    timeout=CONNECT_TIMEOUT_SECONDS,
                )
        return self._raw_pools[purpose]

    async def dispose(self) -> None:
        pools, self._raw_pools = self._raw_pools, {}
        for pool in pools.values():
            await pool.close()
        await self.engine.dispose()


async def _no_reset(_connection: Any) -> None:
    return None
