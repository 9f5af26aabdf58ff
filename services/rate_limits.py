"""Per-tenant API rate limits, shared by every API replica (ADR 0012).

Each tenant's API keys are limited per route class (ingest, check, command, read) to a number of
requests per fixed window (`rate_limit_window_seconds`); the defaults are in settings and an
operator can override them per tenant. The Stripe webhook endpoint has a limit of its own per
source address. A process serves requests from leases it takes from Postgres
(`adapters/db/rate_limits.py`), a share of the window's limit at a time, so most requests cost a
dictionary lookup; the leases of all processes together never exceed the limit. A process may
hold leased requests it does not use before the window ends, so a tenant spread over several
replicas can get up to (replicas - 1) x the lease size fewer than the limit, never more.

When Postgres cannot be reached for a lease the request is let through (logged): the route's
own database work answers 503 anyway, and a limiter must not turn an outage into 429s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

from adapters.db import errors as db_errors
from adapters.db import rate_limits as repo
from services.context import Services
from services.errors import RateLimited

log = logging.getLogger("billing.rate_limits")

RouteClass = Literal["ingest", "check", "command", "read"]
ROUTE_CLASSES: tuple[RouteClass, ...] = ("ingest", "check", "command", "read")
WEBHOOK = "webhook"
# A lease takes this share of the window's limit (at least one request, at most LEASE_MAX).
LEASE_SHARE = 20
LEASE_MAX = 1000


def route_class(method: str, path: str) -> RouteClass:
    if path == "/api/billing/usage/check":
        return "check"
    if method in ("GET", "HEAD"):
        return "read"
    if method == "POST" and path.startswith("/api/billing/usage"):
        return "ingest"
    return "command"


@dataclass
class _Lease:
    window_start: float
    left: int  # -1: the window is spent for every process


@dataclass
class RateLimiter:
    """The process's leases, kept on the Services object."""

    window_seconds: int
    cache_seconds: float
    _leases: dict[tuple[str, str], _Lease] = field(default_factory=dict)
    _lease_locks: dict[tuple[str, str], asyncio.Lock] = field(default_factory=dict)
    _overrides: dict[UUID, tuple[float, dict[str, int]]] = field(default_factory=dict)
    _forgotten_before: float = 0.0

    async def take(self, services: Services, subject: str, cls: str, limit: int) -> None:
        """One request of `subject` in class `cls`, or `RateLimited`.

        One lease per key is in flight at a time: requests that find the local lease empty
        while another is fetching one wait for it and then look again. (Each used to lease a
        chunk of its own and keep only its own count, so 32 concurrent requests spent 32 chunks
        of the shared window to serve one: the webhook endpoint refused Stripe with 429 at
        about a tenth of its limit.)"""
        key = (subject, cls)
        while True:
            now = time.time()
            window = now - now % self.window_seconds
            lease = self._leases.get(key)
            if lease is None or lease.window_start != window:
                lease = self._leases[key] = _Lease(window, 0)
            if lease.left > 0:
                lease.left -= 1
                return
            if lease.left < 0:
                reset = max(1, int(window + self.window_seconds - now + 0.999))
                raise RateLimited(cls, limit, self.window_seconds, reset)
            lock = self._lease_locks.setdefault(key, asyncio.Lock())
            async with lock:
                if self._leases.get(key) is not lease or lease.left != 0:
                    continue  # leased (or the window turned) while this request waited
                chunk = max(1, min(limit // LEASE_SHARE, LEASE_MAX))
                try:
                    pool = await services.system_db.raw_pool()
                    leased = await repo.lease(pool, subject, cls, _utc(window), chunk, limit)
                    if window > self._forgotten_before:
                        self._forgotten_before = window
                        await repo.forget_before(pool, _utc(window - self.window_seconds))
                except Exception as error:
                    if not db_errors.is_unavailable(error):
                        raise
                    log.warning("rate limit not checked, database unavailable: %r", error)
                    return
                lease.left = leased if leased > 0 else -1

    async def limit_for(self, services: Services, tenant_id: UUID, cls: RouteClass) -> int:
        cached = self._overrides.get(tenant_id)
        now = time.monotonic()
        if cached is None or cached[0] < now:
            try:
                pool = await services.system_db.raw_pool()
                found = await repo.overrides(pool, tenant_id)
            except Exception as error:
                if not db_errors.is_unavailable(error):
                    raise
                found = cached[1] if cached else {}
            if len(self._overrides) > 10_000:
                self._overrides.clear()
            cached = self._overrides[tenant_id] = (now + self.cache_seconds, found)
        override = cached[1].get(cls)
        return override if override is not None else default_limit(services, cls)

    def forget_overrides(self, tenant_id: UUID) -> None:
        self._overrides.pop(tenant_id, None)


def default_limit(services: Services, cls: str) -> int:
    settings = services.settings
    return {
        "ingest": settings.rate_limit_ingest,
        "check": settings.rate_limit_check,
        "command": settings.rate_limit_command,
        "read": settings.rate_limit_read,
    }[cls]


def limiter(services: Services) -> RateLimiter:
    found = services.extras.get("rate_limiter")
    if not isinstance(found, RateLimiter):
        found = services.extras["rate_limiter"] = RateLimiter(
            services.settings.rate_limit_window_seconds, services.settings.api_key_cache_seconds
        )
    return found


async def limit_tenant(services: Services, tenant_id: UUID, method: str, path: str) -> None:
    """The tenant's request on this route, within its class's limit, or `RateLimited`."""
    if not services.settings.rate_limits_enabled:
        return
    cls = route_class(method, path)
    rl = limiter(services)
    limit = await rl.limit_for(services, tenant_id, cls)
    await rl.take(services, f"tenant:{tenant_id}", cls, limit)


async def limit_webhook_source(services: Services, address: str) -> None:
    """A Stripe webhook from `address`, within the per-address limit, or `RateLimited`."""
    if not services.settings.rate_limits_enabled:
        return
    limit = services.settings.rate_limit_webhook_per_address
    await limiter(services).take(services, f"ip:{address}", WEBHOOK, limit)


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)
