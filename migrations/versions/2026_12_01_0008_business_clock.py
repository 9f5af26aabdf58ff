"""the demo clock on the usage path: each subscription's business clock, and its status, where
ingestion and the quota check can read them

A subscription workflow runs on business time: `business = business_origin + (wall -
wall_origin) * time_scale` (1.0 in production, larger under `billing dev --time-scale N`). Its
periods are projected in business time. The usage path now reads the same clock from the
subscription row, so an event stamped with the caller's wall clock lands in the business period
that is open at that instant (ADR 0007).

1. `subscriptions.clock_wall_origin`, `clock_business_origin`, `time_scale`: projected by the
   workflow with every other field; NULL origins (rows written before) mean business = wall.
2. `usage_open_period` and `usage_quota_row` also return the subscription's status and clock
   (appended columns), so a paused subscription refuses usage and the quota check says why.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 15:00:00
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

from migrations import helpers as h

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = f"{h.APP_ROLE}, {h.WORKER_ROLE}, billing_worker_scoped"

OPEN_PERIOD = """
CREATE FUNCTION usage_open_period(p_tenant uuid)
RETURNS TABLE (access_status text, plan_id uuid, period_start timestamptz,
               period_end timestamptz, overrides json, subscription_status text,
               clock_wall_origin timestamptz, clock_business_origin timestamptz,
               time_scale double precision)
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
  SELECT set_config('app.tenant_id', p_tenant::text, true);
  SELECT t.access_status, s.plan_id, s.current_period_start, s.current_period_end,
         (SELECT json_agg(json_build_array(o.metric, o.included, o.cap))
          FROM entitlement_overrides o
          WHERE o.tenant_id = t.id AND (o.expires_at IS NULL OR o.expires_at > now())),
         s.status, s.clock_wall_origin, s.clock_business_origin, s.time_scale
  FROM tenants t
  LEFT JOIN subscriptions s
    ON s.tenant_id = t.id AND s.status <> 'canceled' AND s.current_period_start IS NOT NULL
  WHERE t.id = p_tenant;
$$
"""

QUOTA_ROW = """
CREATE FUNCTION usage_quota_row(p_tenant uuid, p_metric text)
RETURNS TABLE (access_status text, plan_id uuid, period_start timestamptz,
               period_end timestamptz, used numeric, blocked boolean,
               override_included bigint, override_cap text, override_expires_at timestamptz,
               subscription_status text)
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
  SELECT set_config('app.tenant_id', p_tenant::text, true);
  SELECT t.access_status, s.plan_id, s.current_period_start, s.current_period_end,
         coalesce(c.quantity, 0), c.blocked_at IS NOT NULL, o.included, o.cap, o.expires_at,
         s.status
  FROM tenants t
  LEFT JOIN subscriptions s
    ON s.tenant_id = t.id AND s.status <> 'canceled' AND s.current_period_start IS NOT NULL
  LEFT JOIN usage_period_counters c
    ON c.tenant_id = t.id AND c.metric = p_metric AND c.period_start = s.current_period_start
  LEFT JOIN entitlement_overrides o
    ON o.tenant_id = t.id AND o.metric = p_metric
       AND (o.expires_at IS NULL OR o.expires_at > now())
  WHERE t.id = p_tenant;
$$
"""

SIGNATURES = ("usage_open_period(uuid)", "usage_quota_row(uuid, text)")


def _replace(definitions: Sequence[str]) -> None:
    # The result columns change, which CREATE OR REPLACE cannot do.
    for signature in SIGNATURES:
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
    for definition in definitions:
        op.execute(definition)
    for signature in SIGNATURES:
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {ROLES}")


def _sibling(name: str) -> ModuleType:
    """An earlier migration of this directory, for the definitions a downgrade restores."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def upgrade() -> None:
    op.execute("ALTER TABLE subscriptions ADD COLUMN clock_wall_origin timestamptz")
    op.execute("ALTER TABLE subscriptions ADD COLUMN clock_business_origin timestamptz")
    op.execute(
        "ALTER TABLE subscriptions ADD COLUMN time_scale double precision NOT NULL DEFAULT 1"
    )
    _replace((OPEN_PERIOD, QUOTA_ROW))


def downgrade() -> None:
    quota = _sibling("2026_11_24_0005_quota_notify")
    ingest = _sibling("2026_11_24_0006_usage_ingest_functions")
    _replace((ingest.OPEN_PERIOD, quota._quota_row_function(with_expiry=True)))
    for column in ("time_scale", "clock_business_origin", "clock_wall_origin"):
        op.execute(f"ALTER TABLE subscriptions DROP COLUMN {column}")
