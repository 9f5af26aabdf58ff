"""quota cache coherence: change notifications, and the override's expiry in the quota read

The API answers quota checks from an in-process cache of `usage_quota_row` results (ADR 0003,
"The quota cache"). Every write that can change a quota answer notifies channel
`billing_quota` with the tenant id (`*` for a TRUNCATE), from triggers, so no writer (API,
worker, operator, a person in psql) can forget it. The notification is sent at commit; a
rolled-back write sends nothing.

`usage_quota_row` also returns the override's expiry, so a cached answer is dropped the moment
the override it used runs out.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 03:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from migrations import helpers as h

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHANNEL = "billing_quota"
# (table, tenant column): the tables `usage_quota_row` reads.
WATCHED = (
    ("tenants", "id"),
    ("subscriptions", "tenant_id"),
    ("usage_period_counters", "tenant_id"),
    ("entitlement_overrides", "tenant_id"),
)


def _quota_row_function(with_expiry: bool) -> str:
    expiry_column = ", override_expires_at timestamptz" if with_expiry else ""
    expiry_value = ", o.expires_at" if with_expiry else ""
    return f"""
CREATE FUNCTION usage_quota_row(p_tenant uuid, p_metric text)
RETURNS TABLE (access_status text, plan_id uuid, period_start timestamptz,
               period_end timestamptz, used numeric, blocked boolean,
               override_included bigint, override_cap text{expiry_column})
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
  -- Statements of a SQL function run in order: the tenant is set before the read, locally to
  -- the transaction (a single-statement call's own, so it ends with the statement).
  SELECT set_config('app.tenant_id', p_tenant::text, true);
  SELECT t.access_status, s.plan_id, s.current_period_start, s.current_period_end,
         coalesce(c.quantity, 0), c.blocked_at IS NOT NULL, o.included, o.cap{expiry_value}
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


def _replace_quota_row_function(with_expiry: bool) -> None:
    # The result columns change, which CREATE OR REPLACE cannot do.
    op.execute("DROP FUNCTION IF EXISTS usage_quota_row(uuid, text)")
    op.execute(_quota_row_function(with_expiry))
    op.execute("REVOKE ALL ON FUNCTION usage_quota_row(uuid, text) FROM PUBLIC")
    op.execute(
        f"GRANT EXECUTE ON FUNCTION usage_quota_row(uuid, text) TO {h.APP_ROLE}, {h.WORKER_ROLE}"
    )


def upgrade() -> None:
    _replace_quota_row_function(with_expiry=True)
    for column in ("tenant_id", "id"):
        op.execute(
            f"""
CREATE FUNCTION notify_quota_change_{column}() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER SET search_path = public, pg_temp AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('{CHANNEL}', OLD.{column}::text);
  ELSE
    PERFORM pg_notify('{CHANNEL}', NEW.{column}::text);
  END IF;
  RETURN NULL;
END $$
"""
        )
    op.execute(
        f"""
CREATE FUNCTION notify_quota_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY INVOKER SET search_path = public, pg_temp AS $$
BEGIN
  PERFORM pg_notify('{CHANNEL}', '*');
  RETURN NULL;
END $$
"""
    )
    for table, column in WATCHED:
        op.execute(
            f"CREATE TRIGGER {table}_quota_change AFTER INSERT OR UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION notify_quota_change_{column}()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_quota_truncate AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION notify_quota_truncate()"
        )


def downgrade() -> None:
    for table, _column in WATCHED:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_quota_truncate ON {table}")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_quota_change ON {table}")
    op.execute("DROP FUNCTION IF EXISTS notify_quota_truncate()")
    for column in ("tenant_id", "id"):
        op.execute(f"DROP FUNCTION IF EXISTS notify_quota_change_{column}()")
    _replace_quota_row_function(with_expiry=False)
