"""usage ingestion as single-statement transactions: `usage_open_period` and `usage_ingest`

Both are SQL functions that set `app.tenant_id` for their own statement and then run as the
caller (SECURITY INVOKER, so row-level security applies), like `usage_quota_row` (0004). Called
outside an explicit transaction, each is its own transaction: the batch's events, daily totals
and period counter commit together when the statement ends, inside Postgres, so the counter's
row lock is held for no network round trip and no wait on the API's event loop. Concurrent
batches of one tenant queue on that lock; before, each held it until its COMMIT came back from
Python (ADR 0003, section 1).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 03:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from migrations import helpers as h

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN_PERIOD = """
CREATE FUNCTION usage_open_period(p_tenant uuid)
RETURNS TABLE (access_status text, plan_id uuid, period_start timestamptz,
               period_end timestamptz, overrides json)
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
  SELECT set_config('app.tenant_id', p_tenant::text, true);
  SELECT t.access_status, s.plan_id, s.current_period_start, s.current_period_end,
         (SELECT json_agg(json_build_array(o.metric, o.included, o.cap))
          FROM entitlement_overrides o
          WHERE o.tenant_id = t.id AND (o.expires_at IS NULL OR o.expires_at > now()))
  FROM tenants t
  LEFT JOIN subscriptions s
    ON s.tenant_id = t.id AND s.status <> 'canceled' AND s.current_period_start IS NOT NULL
  WHERE t.id = p_tenant;
$$
"""

# Two variants of one statement, built from one template below.
#
# `usage_ingest` records a batch that may hold keys already recorded. Duplicates are skipped by
# the unique (tenant_id, idempotency_key) index (ON CONFLICT DO NOTHING), so concurrent batches
# carrying the same key race safely: the loser waits for the winner's commit and inserts
# nothing. Only the rows actually inserted (RETURNING) feed the daily totals and the period
# counter: a counter can never count an event the events table does not hold. The answer: the
# keys that were not inserted (already recorded), then the counters as the batch left them.
#
# `usage_ingest_new` is the same batch on the assumption that none of its keys is recorded yet,
# the common case: a plain INSERT, which raises unique_violation (23505) at the first key that
# is, and then nothing of the statement remains (it is its own transaction); the caller runs
# `usage_ingest` instead. It skips ON CONFLICT's speculative insertion and the RETURNING
# round (~20 % of the statement's time), and aggregates its input directly, every row of which
# is inserted when it succeeds.
#
# In both, rows come sorted by key (the caller sorts) and aggregates are written sorted by
# metric, so concurrent batches take row locks in the same order and do not deadlock.
_INGEST_TEMPLATE = """
CREATE FUNCTION {name}(
  p_tenant uuid, p_metrics text[], p_quantities text[], p_occurred timestamptz[],
  p_keys text[], p_metadata text[], p_gauges text[],
  p_period_start timestamptz, p_period_end timestamptz)
RETURNS TABLE (idempotency_key text, metric text, quantity numeric,
               notified_threshold smallint, exceeded boolean, blocked boolean)
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
  SELECT set_config('app.tenant_id', p_tenant::text, true);
  WITH input AS (
    SELECT * FROM unnest(p_metrics, p_quantities, p_occurred, p_keys, p_metadata)
      AS t(metric, quantity, occurred_at, idempotency_key, metadata)
  ), inserted AS (
    INSERT INTO usage_events AS e
      (tenant_id, metric, quantity, occurred_at, idempotency_key, metadata)
    SELECT p_tenant, i.metric, i.quantity::numeric, i.occurred_at, i.idempotency_key,
           NULLIF(i.metadata, '')::jsonb  -- '' stands for "no metadata"
    FROM input i
    {on_conflict}
  ), per_day AS (
    SELECT x.metric, (x.occurred_at AT TIME ZONE 'UTC')::date AS usage_date,
           CASE WHEN x.metric = ANY(p_gauges) THEN max(x.quantity) ELSE sum(x.quantity) END
             AS quantity,
           count(*) AS n
    FROM {counted} x GROUP BY 1, 2
  ), daily AS (
    INSERT INTO usage_daily_totals AS d (tenant_id, metric, usage_date, quantity, event_count)
    SELECT p_tenant, p.metric, p.usage_date, p.quantity, p.n FROM per_day p
    ORDER BY p.metric, p.usage_date
    ON CONFLICT (tenant_id, metric, usage_date) DO UPDATE SET
      quantity = CASE WHEN d.metric = ANY(p_gauges)
                      THEN GREATEST(d.quantity, EXCLUDED.quantity)
                      ELSE d.quantity + EXCLUDED.quantity END,
      event_count = d.event_count + EXCLUDED.event_count,
      updated_at = now()
  ), per_metric AS (
    -- from the daily aggregates: a sum of daily sums, a max of daily maxima
    SELECT p.metric,
           CASE WHEN p.metric = ANY(p_gauges) THEN max(p.quantity) ELSE sum(p.quantity) END
             AS quantity
    FROM per_day p GROUP BY 1
  ), counters AS (
    INSERT INTO usage_period_counters AS c (tenant_id, metric, period_start, period_end, quantity)
    SELECT p_tenant, m.metric, p_period_start, p_period_end, m.quantity FROM per_metric m
    ORDER BY m.metric
    ON CONFLICT (tenant_id, metric, period_start) DO UPDATE SET
      quantity = CASE WHEN c.metric = ANY(p_gauges)
                      THEN GREATEST(c.quantity, EXCLUDED.quantity)
                      ELSE c.quantity + EXCLUDED.quantity END,
      updated_at = now()
    RETURNING c.metric, c.quantity, c.notified_threshold,
              c.soft_cap_exceeded_at IS NOT NULL AS exceeded, c.blocked_at IS NOT NULL AS blocked
  )
  {existing}
  SELECT NULL::text, k.metric, k.quantity, k.notified_threshold, k.exceeded, k.blocked
  FROM counters k;
$$
"""
INGEST = _INGEST_TEMPLATE.format(
    name="usage_ingest",
    on_conflict="ON CONFLICT (tenant_id, idempotency_key) DO NOTHING\n"
    "    RETURNING e.metric, e.quantity, e.occurred_at, e.idempotency_key",
    counted="inserted",
    existing="SELECT i.idempotency_key, NULL::text, NULL::numeric, NULL::smallint, NULL::bool, "
    "NULL::bool\n  FROM input i\n  WHERE NOT EXISTS "
    "(SELECT 1 FROM inserted x WHERE x.idempotency_key = i.idempotency_key)\n  UNION ALL",
)
INGEST_NEW = _INGEST_TEMPLATE.format(
    name="usage_ingest_new",
    on_conflict="",
    counted="(SELECT i.metric, i.quantity::numeric AS quantity, i.occurred_at FROM input i)",
    existing="",
)

_ARGUMENTS = (
    "(uuid, text[], text[], timestamptz[], text[], text[], text[], timestamptz, timestamptz)"
)
SIGNATURES = (
    "usage_open_period(uuid)",
    f"usage_ingest{_ARGUMENTS}",
    f"usage_ingest_new{_ARGUMENTS}",
)


def upgrade() -> None:
    op.execute(OPEN_PERIOD)
    op.execute(INGEST)
    op.execute(INGEST_NEW)
    for signature in SIGNATURES:
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {h.APP_ROLE}, {h.WORKER_ROLE}")


def downgrade() -> None:
    for signature in SIGNATURES:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
