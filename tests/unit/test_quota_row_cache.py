"""The quota check's row cache on its own: when it may answer, and when it must not."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from adapters.db.quota_cache import QuotaRowCache
from adapters.db.usage import QuotaRow

NOW = datetime(2026, 11, 24, 12, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def row(
    used: int = 10, period_end: datetime | None = None, expires: datetime | None = None
) -> QuotaRow:
    return QuotaRow(
        access_status="active",
        plan_id=uuid.uuid4(),
        period_start=NOW - timedelta(days=3),
        period_end=period_end or NOW + timedelta(days=27),
        used=Decimal(used),
        blocked=False,
        override_included=None if expires is None else 500,
        override_cap=None,
        override_expires_at=expires,
    )


def live_cache(clock: Clock | None = None, ttl: float = 5.0, **kwargs: int) -> QuotaRowCache:
    cache = QuotaRowCache(ttl, monotonic=clock or Clock(), **kwargs)
    cache.go_live()
    return cache


def fill(cache: QuotaRowCache, tenant: uuid.UUID, metric: str, value: QuotaRow) -> None:
    cache.put(tenant, metric, value, cache.token(tenant))


def test_answers_only_while_listening() -> None:
    tenant = uuid.uuid4()
    cache = QuotaRowCache(5.0)
    fill(cache, tenant, "api_calls", row())
    assert cache.get(tenant, "api_calls", NOW) is None  # never went live: nothing stored

    cache.go_live()
    stored = row()
    fill(cache, tenant, "api_calls", stored)
    assert cache.get(tenant, "api_calls", NOW) is stored
    cache.go_dark()  # the listening connection dropped
    assert cache.get(tenant, "api_calls", NOW) is None
    cache.go_live()  # back, but it may have missed notifications: it starts empty
    assert cache.get(tenant, "api_calls", NOW) is None


def test_a_disabled_cache_stores_nothing() -> None:
    tenant = uuid.uuid4()
    cache = QuotaRowCache(0)
    cache.go_live()
    fill(cache, tenant, "api_calls", row())
    assert cache.get(tenant, "api_calls", NOW) is None


def test_rows_expire_after_the_ttl() -> None:
    clock = Clock()
    tenant = uuid.uuid4()
    cache = live_cache(clock, ttl=5.0)
    fill(cache, tenant, "api_calls", row())
    clock.now += 4.9
    assert cache.get(tenant, "api_calls", NOW) is not None
    clock.now += 0.2
    assert cache.get(tenant, "api_calls", NOW) is None


def test_rows_are_not_served_past_the_period_end_or_the_override_expiry() -> None:
    tenant = uuid.uuid4()
    cache = live_cache()
    fill(cache, tenant, "a", row(period_end=NOW + timedelta(minutes=1)))
    fill(cache, tenant, "b", row(expires=NOW + timedelta(seconds=30)))
    assert cache.get(tenant, "a", NOW) is not None
    assert cache.get(tenant, "b", NOW) is not None
    assert cache.get(tenant, "a", NOW + timedelta(minutes=1)) is None
    assert cache.get(tenant, "b", NOW + timedelta(seconds=30)) is None


def test_a_notification_drops_that_tenant_only() -> None:
    mine, other = uuid.uuid4(), uuid.uuid4()
    cache = live_cache()
    fill(cache, mine, "api_calls", row())
    fill(cache, mine, "llm_tokens", row())
    fill(cache, other, "api_calls", row())
    cache.notified(str(mine))
    assert cache.get(mine, "api_calls", NOW) is None
    assert cache.get(mine, "llm_tokens", NOW) is None
    assert cache.get(other, "api_calls", NOW) is not None


def test_truncate_and_unreadable_payloads_drop_everything() -> None:
    tenant = uuid.uuid4()
    cache = live_cache()
    for payload in ("*", "not-a-uuid"):
        fill(cache, tenant, "api_calls", row())
        cache.notified(payload)
        assert cache.get(tenant, "api_calls", NOW) is None


def test_a_read_that_raced_with_a_change_is_not_stored() -> None:
    tenant = uuid.uuid4()
    cache = live_cache()
    token = cache.token(tenant)  # the check starts reading Postgres...
    cache.invalidate(tenant)  # ...a write to this tenant commits meanwhile...
    cache.put(tenant, "api_calls", row(used=1), token)  # ...so what it read may be stale
    assert cache.get(tenant, "api_calls", NOW) is None

    token = cache.token(tenant)
    cache.invalidate_all()
    cache.put(tenant, "api_calls", row(used=1), token)
    assert cache.get(tenant, "api_calls", NOW) is None

    other = uuid.uuid4()
    token = cache.token(tenant)
    cache.invalidate(other)  # another tenant's change does not matter
    cache.put(tenant, "api_calls", row(used=1), token)
    assert cache.get(tenant, "api_calls", NOW) is not None


def test_size_is_bounded() -> None:
    cache = live_cache(max_entries=3)
    tenants = [uuid.uuid4() for _ in range(4)]
    for tenant in tenants:
        fill(cache, tenant, "api_calls", row())
    # The fourth row found the cache full: it was emptied first, then the row stored.
    assert [cache.get(t, "api_calls", NOW) is not None for t in tenants] == [
        False,
        False,
        False,
        True,
    ]
