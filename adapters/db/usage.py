"""Usage events, daily totals and period counters.

The hot paths (batch ingestion and the quota read) are SQL functions called on a bare asyncpg
connection, each one statement that is its own transaction: a batch of 1,000 events costs one
round trip, not 1,000 (ADR 0003). Everything else runs inside the caller's SQLAlchemy
transaction; those repositories never commit.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.plans import PlanVersion, get_plan_version
from billing.catalog import Plan
from billing.periods import WALL_CLOCK, BusinessClock, business_clock


async def driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection inside this SQLAlchemy transaction (same transaction)."""
    raw = await conn.get_raw_connection()
    return raw.driver_connection


class PlanCache:
    """Plan versions by id. Plan rows are immutable (a trigger forbids UPDATE), so a parsed plan
    never goes stale and the quota check does not re-read and re-validate its JSON each time."""

    def __init__(self) -> None:
        self._plans: dict[UUID, Plan] = {}

    def cached(self, plan_id: UUID) -> Plan | None:
        return self._plans.get(plan_id)

    async def get(self, conn: AsyncConnection, plan_id: UUID) -> Plan:
        plan = self._plans.get(plan_id)
        if plan is None:
            version: PlanVersion | None = await get_plan_version(conn, plan_id)
            if version is None:
                raise LookupError(f"no plan version {plan_id}")
            plan = self._plans[plan_id] = version.plan()
        return plan


# --- Open period -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenPeriod:
    access_status: str
    plan_id: UUID | None
    period_start: datetime | None
    period_end: datetime | None
    # metric -> (included, cap) of unexpired operator overrides
    overrides: dict[str, tuple[int | None, str | None]]
    subscription_status: str | None = None
    clock: BusinessClock = WALL_CLOCK


# `usage_open_period` (migration 0006) sets app.tenant_id for its own statement, then reads.
_OPEN_PERIOD = "SELECT * FROM usage_open_period($1)"


async def open_period(conn: AsyncConnection, tenant_id: UUID) -> OpenPeriod | None:
    """The tenant's access status and its live subscription's open period (None: no tenant),
    inside a SQLAlchemy transaction."""
    return await open_period_on(await driver(conn), tenant_id)


async def open_period_on(connection: Any, tenant_id: UUID) -> OpenPeriod | None:
    """The same on a bare asyncpg connection, as its own single-statement transaction."""
    row = await connection.fetchrow(_OPEN_PERIOD, tenant_id)
    if row is None:
        return None
    # SQLAlchemy registers a JSON codec on its asyncpg connections; a bare one returns text.
    raw = json.loads(row[4]) if isinstance(row[4], str) else row[4]
    overrides = {m: (i, c) for m, i, c in raw} if raw else {}
    return OpenPeriod(
        row[0], row[1], row[2], row[3], overrides, row[5], business_clock(row[6], row[7], row[8])
    )


# --- Ingestion -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CounterAfter:
    """A period counter as the batch left it."""

    metric: str
    quantity: Decimal
    notified_threshold: int
    soft_cap_exceeded: bool
    blocked: bool


@dataclass(frozen=True, slots=True)
class IngestResult:
    # Keys of this batch that were already recorded (by an earlier batch or a concurrent one):
    # usually none, so the statement sends back the exceptions rather than 1,000 accepted keys.
    existing_keys: frozenset[str]
    counters: tuple[CounterAfter, ...]


# `usage_ingest_new` / `usage_ingest` (migration 0006): events, daily totals and the period
# counter in one statement, which is its own transaction when called outside one (the counter's
# row lock is released at the end of the statement, inside Postgres). The answer: keys already
# recorded, then the counters.
#
# The text columns travel as one string each, joined by the ASCII unit separator and split by
# Postgres (string_to_array): asyncpg's array encoder inspects every element of a text[] (two
# isinstance checks against collections.abc each), which cost ~2 ms per 1,000 events. Metadata
# is JSON text, where a raw separator cannot occur (JSON escapes control characters); metrics
# come from the catalog and quantities are decimal text. An idempotency key may hold any
# character, so a batch whose keys contain the separator goes as arrays instead.
_SEPARATOR = "\x1f"
#
# The statement also writes the request's audit row (ADR 0019), in the same statement and so the
# same transaction: one row per request that recorded something, with the actor, the request
# id, the number of events recorded and the period totals after (`before` is null: usage
# events are created, never changed). It reads the function's answer, so it runs after the
# function has set the tenant for row-level security.
_AUDITED = """WITH r AS ({call}), audited AS (
  INSERT INTO audit_log (tenant_id, actor, action, subject_type, subject_id, request_id, details)
  SELECT $1, $10, 'usage.recorded', 'usage', NULL, $11,
         jsonb_build_object(
           'before', NULL,
           'after', jsonb_build_object(
             'events', $12::int - (SELECT count(*) FROM r WHERE r.idempotency_key IS NOT NULL),
             'period_totals', jsonb_object_agg(r.metric, trim_scale(r.quantity)::text)))
  FROM r WHERE r.idempotency_key IS NULL AND r.metric IS NOT NULL
  HAVING count(*) > 0
)
SELECT * FROM r"""
_INGEST_PACKED = _AUDITED.format(
    call="SELECT * FROM {function}($1, string_to_array($2, E'\\x1f'), "
    "string_to_array($3, E'\\x1f'), $4, string_to_array($5, E'\\x1f'), "
    "string_to_array($6, E'\\x1f'), $7, $8, $9)"
)
_INGEST_ARRAYS = _AUDITED.format(
    call="SELECT * FROM {function}($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
# First as if no key were recorded yet (a plain INSERT); if one is, that attempt leaves nothing
# behind and the batch goes again with ON CONFLICT DO NOTHING (migration 0006).
_OPTIMISTIC, _DEDUPLICATING = "usage_ingest_new", "usage_ingest"


@dataclass(frozen=True, slots=True)
class EventColumns:
    """A batch as parallel columns, the shape `unnest` wants (sorted by idempotency key)."""

    metrics: list[str]
    # Decimal text: asyncpg's binary numeric encoder is slower than Postgres parsing the text.
    quantities: list[str]
    occurred_at: list[datetime]
    keys: list[str]
    metadata_json: list[bytes | None]  # UTF-8 JSON


async def ingest_events(
    connection: Any,
    *,
    tenant_id: UUID,
    events: EventColumns,
    gauge_metrics: Sequence[str],
    period_start: datetime,
    period_end: datetime,
    actor: str,
    request_id: str | None,
) -> IngestResult:
    """`connection`: a bare asyncpg connection outside any transaction (the statement commits,
    with its audit row)."""
    keys = _SEPARATOR.join(events.keys)
    if keys.count(_SEPARATOR) == len(events.keys) - 1:
        statement = _INGEST_PACKED
        columns: tuple[Any, ...] = (
            _SEPARATOR.join(events.metrics),
            _SEPARATOR.join(events.quantities),
            keys,
            # one UTF-8 decode for the batch, not one per event
            b"\x1f".join([m or b"" for m in events.metadata_json]).decode(),
        )
    else:  # a key holds the separator itself
        statement = _INGEST_ARRAYS
        metadata = [m.decode() if m else "" for m in events.metadata_json]
        columns = (events.metrics, events.quantities, events.keys, metadata)
    arguments = (
        tenant_id,
        columns[0],
        columns[1],
        events.occurred_at,
        columns[2],
        columns[3],
        list(gauge_metrics),
        period_start,
        period_end,
        actor,
        request_id,
        len(events.keys),
    )
    try:
        rows = await connection.fetch(statement.format(function=_OPTIMISTIC), *arguments)
    except asyncpg.UniqueViolationError:  # some key was recorded before: skip those
        rows = await connection.fetch(statement.format(function=_DEDUPLICATING), *arguments)
    existing = frozenset(r[0] for r in rows if r[0] is not None)
    counters = tuple(
        CounterAfter(r[1], r[2], r[3], r[4], r[5]) for r in rows if r[0] is None and r[1]
    )
    return IngestResult(existing, counters)


async def mark_threshold_notified(
    conn: AsyncConnection, tenant_id: UUID, metric: str, period_start: datetime, threshold: int
) -> bool:
    """Raise the counter's notified threshold; False when a concurrent request already did."""
    row = await (await driver(conn)).fetchrow(
        "UPDATE usage_period_counters SET notified_threshold = $4, updated_at = now() "
        "WHERE tenant_id = $1 AND metric = $2 AND period_start = $3 AND notified_threshold < $4 "
        "RETURNING 1",
        tenant_id,
        metric,
        period_start,
        threshold,
    )
    return row is not None


async def mark_soft_cap_exceeded(
    conn: AsyncConnection, tenant_id: UUID, metric: str, period_start: datetime
) -> bool:
    """Stamp the first crossing of a soft cap; True only for the request that stamped it."""
    row = await (await driver(conn)).fetchrow(
        "UPDATE usage_period_counters SET soft_cap_exceeded_at = now(), updated_at = now() "
        "WHERE tenant_id = $1 AND metric = $2 AND period_start = $3 "
        "AND soft_cap_exceeded_at IS NULL RETURNING 1",
        tenant_id,
        metric,
        period_start,
    )
    return row is not None


# --- Quota read --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QuotaRow:
    access_status: str
    plan_id: UUID | None
    period_start: datetime | None
    period_end: datetime | None
    used: Decimal
    blocked: bool
    override_included: int | None
    override_cap: str | None
    override_expires_at: datetime | None
    subscription_status: str | None = None


# `usage_quota_row` (migrations 0004, 0005) sets app.tenant_id for its own statement and reads
# tenant status, live subscription, this period's counter (primary-key lookup) and an unexpired
# override, as the app role (RLS applies): one round trip, no explicit transaction.
_QUOTA = "SELECT * FROM usage_quota_row($1, $2)"


async def quota_row(connection: Any, tenant_id: UUID, metric: str) -> QuotaRow | None:
    """`connection`: an asyncpg connection outside any explicit transaction (the statement is
    its own transaction, so the tenant setting ends with it)."""
    row = await connection.fetchrow(_QUOTA, tenant_id, metric)
    return None if row is None else QuotaRow(*row)


# --- Reads -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CounterRow:
    metric: str
    quantity: Decimal
    blocked: bool
    soft_cap_exceeded_at: datetime | None


async def period_counters(
    conn: AsyncConnection, tenant_id: UUID, period_start: datetime
) -> dict[str, CounterRow]:
    rows = (
        await conn.execute(
            text(
                "SELECT metric, quantity, blocked_at IS NOT NULL, soft_cap_exceeded_at "
                "FROM usage_period_counters WHERE tenant_id = :t AND period_start = :p"
            ),
            {"t": tenant_id, "p": period_start},
        )
    ).all()
    return {r[0]: CounterRow(r[0], r[1], r[2], r[3]) for r in rows}


async def overrides(
    conn: AsyncConnection, tenant_id: UUID
) -> dict[str, tuple[int | None, str | None]]:
    rows = (
        await conn.execute(
            text(
                "SELECT metric, included, cap FROM entitlement_overrides WHERE tenant_id = :t "
                "AND (expires_at IS NULL OR expires_at > now())"
            ),
            {"t": tenant_id},
        )
    ).all()
    return {r[0]: (r[1], r[2]) for r in rows}


@dataclass(frozen=True, slots=True)
class DailyTotal:
    usage_date: date
    quantity: Decimal
    event_count: int


async def daily_series(
    conn: AsyncConnection, tenant_id: UUID, metric: str, first: date, last: date
) -> list[DailyTotal]:
    rows = (
        await conn.execute(
            text(
                "SELECT usage_date, quantity, event_count FROM usage_daily_totals "
                "WHERE tenant_id = :t AND metric = :m AND usage_date BETWEEN :a AND :b "
                "ORDER BY usage_date"
            ),
            {"t": tenant_id, "m": metric, "a": first, "b": last},
        )
    ).all()
    return [DailyTotal(r[0], r[1], r[2]) for r in rows]


async def stream_events(
    conn: AsyncConnection, tenant_id: UUID, start: datetime, end: datetime
) -> AsyncIterator[tuple[Any, ...]]:
    """Raw events in [start, end) in time order, through a server-side cursor (constant memory)."""
    result = await conn.stream(
        text(
            "SELECT occurred_at, metric, quantity, idempotency_key, metadata::text, received_at "
            "FROM usage_events WHERE tenant_id = :t AND occurred_at >= :a AND occurred_at < :b "
            "ORDER BY occurred_at, id"
        ).execution_options(yield_per=1000),
        {"t": tenant_id, "a": start, "b": end},
    )
    async for row in result:
        yield tuple(row)


# --- Grace effects and overrides (worker role) -------------------------------------------------


async def set_blocked(
    conn: AsyncConnection, tenant_id: UUID, metric: str, period_start: datetime, blocked: bool
) -> bool:
    result = await conn.execute(
        text(
            "UPDATE usage_period_counters SET blocked_at = "
            + ("coalesce(blocked_at, now())" if blocked else "NULL")
            + ", updated_at = now() WHERE tenant_id = :t AND metric = :m AND period_start = :p"
        ),
        {"t": tenant_id, "m": metric, "p": period_start},
    )
    return bool(result.rowcount)


async def upsert_override(
    conn: AsyncConnection,
    *,
    tenant_id: UUID,
    metric: str,
    included: int | None,
    cap: str | None,
    reason: str,
    actor: str,
    expires_at: datetime | None,
) -> None:
    await conn.execute(
        text(
            "INSERT INTO entitlement_overrides "
            "(tenant_id, metric, included, cap, reason, actor, expires_at) "
            "VALUES (:t, :m, :i, :c, :r, :a, :e) "
            "ON CONFLICT (tenant_id, metric) DO UPDATE SET included = EXCLUDED.included, "
            "cap = EXCLUDED.cap, reason = EXCLUDED.reason, actor = EXCLUDED.actor, "
            "expires_at = EXCLUDED.expires_at, updated_at = now()"
        ),
        {
            "t": tenant_id,
            "m": metric,
            "i": included,
            "c": cap,
            "r": reason,
            "a": actor,
            "e": expires_at,
        },
    )


async def delete_override(conn: AsyncConnection, tenant_id: UUID, metric: str) -> bool:
    result = await conn.execute(
        text("DELETE FROM entitlement_overrides WHERE tenant_id = :t AND metric = :m"),
        {"t": tenant_id, "m": metric},
    )
    return bool(result.rowcount)


# --- Reconciliation (worker role: across tenants) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Drift:
    tenant_id: UUID
    metric: str
    usage_date: date | None  # None: a period counter
    period_start: datetime | None
    recorded: Decimal | None
    recomputed: Decimal | None


# Daily totals recomputed from raw events for [first, last] (UTC days), compared with the stored
# rows both ways (a missing row and an orphan row are drift too).
_DAILY_DRIFT = """
WITH truth AS (
  SELECT e.tenant_id, e.metric, (e.occurred_at AT TIME ZONE 'UTC')::date AS usage_date,
         CASE WHEN e.metric = ANY(:gauges) THEN max(e.quantity) ELSE sum(e.quantity) END AS q,
         count(*) AS n
  FROM usage_events e
  WHERE e.occurred_at >= :start_ts AND e.occurred_at < :end_ts
  GROUP BY 1, 2, 3
), stored AS (
  SELECT tenant_id, metric, usage_date, quantity AS q, event_count AS n FROM usage_daily_totals
  WHERE usage_date BETWEEN :first AND :last
)
SELECT coalesce(t.tenant_id, s.tenant_id), coalesce(t.metric, s.metric),
       coalesce(t.usage_date, s.usage_date), s.q, t.q, t.n
FROM truth t FULL JOIN stored s
  ON s.tenant_id = t.tenant_id AND s.metric = t.metric AND s.usage_date = t.usage_date
WHERE s.q IS DISTINCT FROM t.q OR s.n IS DISTINCT FROM t.n
"""

# Period counters overlapping [first, last], recomputed from raw events of their period.
_COUNTER_DRIFT = """
WITH truth AS (
  SELECT c.tenant_id, c.metric, c.period_start,
         coalesce((SELECT CASE WHEN c.metric = ANY(:gauges) THEN max(e.quantity)
                               ELSE sum(e.quantity) END
                   FROM usage_events e
                   WHERE e.tenant_id = c.tenant_id AND e.metric = c.metric
                     AND e.occurred_at >= c.period_start AND e.occurred_at < c.period_end),
                  0) AS q,
         c.quantity AS stored
  FROM usage_period_counters c
  WHERE c.period_end > :start_ts AND c.period_start < :end_ts
)
SELECT tenant_id, metric, period_start, stored, q FROM truth WHERE stored <> q
"""


def _day_start(day: date) -> datetime:
    # UTC day boundaries computed here, not in SQL: a date cast in SQL uses the session time zone.
    return datetime.combine(day, time(), tzinfo=UTC)


async def find_drift(
    conn: AsyncConnection, first: date, last: date, gauge_metrics: Sequence[str]
) -> list[Drift]:
    params = {
        "first": first,
        "last": last,
        "start_ts": _day_start(first),
        "end_ts": _day_start(last + timedelta(days=1)),
        "gauges": list(gauge_metrics),
    }
    daily = (await conn.execute(text(_DAILY_DRIFT), params)).all()
    counters = (await conn.execute(text(_COUNTER_DRIFT), params)).all()
    return [Drift(r[0], r[1], r[2], None, r[3], r[4]) for r in daily] + [
        Drift(r[0], r[1], None, r[2], r[3], r[4]) for r in counters
    ]


async def repair_drift(
    conn: AsyncConnection, drift: Sequence[Drift], gauge_metrics: Sequence[str]
) -> None:
    """Make the stored aggregates equal to the recomputed ones (raw events are the truth).

    Ingestion is held off (SHARE lock on the events table) while repairing, and each repair
    recomputes from the events inside its own statement, so a batch committing meanwhile is
    neither lost nor counted twice. Drift is expected to be zero, so the pause is rare.
    """
    if not drift:
        return
    await conn.execute(text("LOCK TABLE usage_events IN SHARE MODE"))
    for d in drift:
        if d.usage_date is not None:
            if d.recomputed is None:
                await conn.execute(
                    text(
                        "DELETE FROM usage_daily_totals "
                        "WHERE tenant_id = :t AND metric = :m AND usage_date = :d"
                    ),
                    {"t": d.tenant_id, "m": d.metric, "d": d.usage_date},
                )
                continue
            await conn.execute(
                text(
                    "INSERT INTO usage_daily_totals (tenant_id, metric, usage_date, quantity, "
                    "event_count) SELECT :t, :m, :d, CASE WHEN :m = ANY(:gauges) "
                    "THEN max(quantity) ELSE sum(quantity) END, count(*) FROM usage_events "
                    "WHERE tenant_id = :t AND metric = :m "
                    "AND occurred_at >= :a AND occurred_at < :b "
                    "ON CONFLICT (tenant_id, metric, usage_date) DO UPDATE SET "
                    "quantity = EXCLUDED.quantity, event_count = EXCLUDED.event_count, "
                    "updated_at = now()"
                ),
                {
                    "t": d.tenant_id,
                    "m": d.metric,
                    "d": d.usage_date,
                    "a": _day_start(d.usage_date),
                    "b": _day_start(d.usage_date + timedelta(days=1)),
                    "gauges": list(gauge_metrics),
                },
            )
        else:
            await conn.execute(
                text(
                    "UPDATE usage_period_counters c SET updated_at = now(), quantity = coalesce(("
                    "SELECT CASE WHEN c.metric = ANY(:gauges) THEN max(e.quantity) "
                    "ELSE sum(e.quantity) END FROM usage_events e "
                    "WHERE e.tenant_id = c.tenant_id AND e.metric = c.metric "
                    "AND e.occurred_at >= c.period_start AND e.occurred_at < c.period_end), 0) "
                    "WHERE tenant_id = :t AND metric = :m AND period_start = :p"
                ),
                {
                    "t": d.tenant_id,
                    "m": d.metric,
                    "p": d.period_start,
                    "gauges": list(gauge_metrics),
                },
            )
