"""The quota check's read, cached in-process and kept coherent by Postgres notifications.

A quota check reads one row (`usage_quota_row`): the tenant's status, its live subscription's
period, the period counter and any operator override. The round trip to Postgres was most of
the check's latency (ADR 0003, "The quota cache"), so the API keeps the rows it read, per
(tenant, metric), and drops them when they may have changed:

* every write to the four tables the row comes from notifies channel `billing_quota` with the
  tenant id, from triggers (migration 0005), at commit, whichever process wrote;
* this process drops a tenant's rows synchronously after its own writes (`invalidate`), so a
  client that records usage and then checks always sees its own usage, without waiting for the
  notification to come back;
* a row is never served past its period end or its override's expiry, nor older than the TTL;
* the cache serves nothing unless the listening connection is up: when it drops (Postgres down,
  restarted, the connection killed), the cache is emptied and every check reads Postgres again,
  which then fails closed as before. It is filled again only after LISTEN is re-established.

A read that raced with an invalidation is not stored (per-tenant generations), so a row read
before a write committed cannot outlive that write's notification.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg  # type: ignore[import-untyped]

from adapters.db.usage import QuotaRow

__all__ = ["CHANNEL", "QuotaChangeListener", "QuotaRowCache"]

log = logging.getLogger("billing.quota_cache")

CHANNEL = "billing_quota"
ALL_TENANTS = "*"


@dataclass(frozen=True, slots=True)
class _Entry:
    row: QuotaRow
    stored_at: float  # monotonic seconds
    valid_until: datetime | None  # the period end or the override expiry, whichever is first


class QuotaRowCache:
    """(tenant, metric) -> the last `usage_quota_row` result, while it is known to be current."""

    def __init__(
        self,
        ttl_seconds: float,
        *,
        max_entries: int = 100_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._entries: dict[UUID, dict[str, _Entry]] = {}
        self._size = 0
        self._generations: dict[UUID, int] = {}
        self._epoch = 0  # bumped when everything is dropped
        self.live = False  # the listening connection is up
        self.invalidations = 0  # notifications and local drops handled (for tests and metrics)

    @property
    def enabled(self) -> bool:
        return self.ttl_seconds > 0

    def get(self, tenant_id: UUID, metric: str, now: datetime) -> QuotaRow | None:
        if not self.live:
            return None
        entry = self._entries.get(tenant_id, {}).get(metric)
        if entry is None:
            return None
        if self._monotonic() - entry.stored_at >= self.ttl_seconds or (
            entry.valid_until is not None and now >= entry.valid_until
        ):
            return None
        return entry.row

    def token(self, tenant_id: UUID) -> tuple[int, int]:
        """Taken before reading Postgres; `put` stores the row only if nothing changed since."""
        return self._epoch, self._generations.get(tenant_id, 0)

    def put(self, tenant_id: UUID, metric: str, row: QuotaRow, token: tuple[int, int]) -> None:
        if not (self.live and self.enabled) or token != self.token(tenant_id):
            return
        if self._size >= self.max_entries:
            self._drop_all()
        ends = [t for t in (row.period_end, row.override_expires_at) if t is not None]
        metrics = self._entries.setdefault(tenant_id, {})
        if metric not in metrics:
            self._size += 1
        metrics[metric] = _Entry(row, self._monotonic(), min(ends) if ends else None)

    def invalidate(self, tenant_id: UUID) -> None:
        """Forget the tenant's rows (after a write that may change its quota answers)."""
        if len(self._generations) >= self.max_entries:
            self._drop_all()
        self._generations[tenant_id] = self._generations.get(tenant_id, 0) + 1
        self._size -= len(self._entries.pop(tenant_id, {}))
        self.invalidations += 1

    def invalidate_all(self) -> None:
        self._drop_all()
        self.invalidations += 1

    def notified(self, payload: str) -> None:
        if payload == ALL_TENANTS:
            self.invalidate_all()
            return
        try:
            tenant_id = UUID(payload)
        except ValueError:
            log.warning("ignoring a %s notification with payload %r", CHANNEL, payload)
            self.invalidate_all()  # unknown meaning: the safe reading is "anything changed"
            return
        self.invalidate(tenant_id)

    def go_live(self) -> None:
        # Anything could have changed while nobody listened: start empty.
        self._drop_all()
        self.live = True

    def go_dark(self) -> None:
        self.live = False
        self._drop_all()

    def _drop_all(self) -> None:
        self._entries.clear()
        self._generations.clear()
        self._size = 0
        self._epoch += 1


class QuotaChangeListener:
    """Holds one connection LISTENing on `billing_quota` and feeds the cache; reconnects after a
    loss (the cache serves nothing meanwhile). A ping every `ping_seconds` notices a connection
    that died silently. Run `run()` as a task; cancel it to stop."""

    def __init__(
        self,
        dsn: str,
        cache: QuotaRowCache,
        *,
        ping_seconds: float = 1.0,
        retry_seconds: float = 1.0,
        application_name: str = "billing-quota-listener",
    ) -> None:
        self._dsn = dsn
        self._cache = cache
        self._ping_seconds = ping_seconds
        self._retry_seconds = retry_seconds
        self._application_name = application_name
        self.connected = asyncio.Event()  # set while listening (tests wait on it)
        self.backend_pid: int | None = None

    async def run(self) -> None:
        while True:
            await self._listen_once()
            await asyncio.sleep(self._retry_seconds)

    async def _listen_once(self) -> None:
        conn: Any = None
        try:
            conn = await asyncpg.connect(
                self._dsn,
                timeout=self._ping_seconds * 5,
                server_settings={"application_name": self._application_name},
            )
            lost = asyncio.Event()
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(CHANNEL, self._on_notify)
            self.backend_pid = conn.get_server_pid()
            self._cache.go_live()
            self.connected.set()
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), self._ping_seconds)
                except TimeoutError:
                    await asyncio.wait_for(conn.fetchval("SELECT 1"), self._ping_seconds)
            log.warning("quota cache: the listening connection was lost; reading Postgres")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("quota cache: not listening (%s); reading Postgres", error)
        finally:
            self._cache.go_dark()
            self.connected.clear()
            self.backend_pid = None
            if conn is not None:
                conn.terminate()

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self._cache.notified(payload)
