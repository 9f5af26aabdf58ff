"""usage: quota notifications from the ingestion transaction; one-round-trip quota read

Quota notifications (80 % / 100 %) are written to the notifications outbox in the same
transaction that moves the period counter, which runs as the RLS-enforced app role.

`usage_quota_row(tenant, metric)` (LANGUAGE sql) is the quota check's read in one statement: it sets
`app.tenant_id` for the statement's own transaction and runs the query as the caller
(SECURITY INVOKER), so row-level security still applies, without the BEGIN / set_config /
COMMIT round trips of an explicit transaction (ADR 0003).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 00:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from migrations import helpers as h

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


QUOTA_ROW_FUNCTION = """
CREATE FUNCTION usage_quota_row(p_tenant uuid, p_metric text)
RETURNS TABLE (access_status text, plan_id uuid, period_start timestamptz,
               period_end timestamptz, used numeric, blocked boolean,
               override_included bigint, override_cap text)
LANGUAGE sql VOLATILE SECURITY INVOKER
SET search_path = public, pg_temp
AS $$
  -- Statements of a SQL function run in order: the tenant is set before the read, locally to
  -- the transaction (a single-statement call's own, so it ends with the statement).
  SELECT set_config('app.tenant_id', p_tenant::text, true);
  SELECT t.access_status, s.plan_id, s.current_period_start, s.current_period_end,
         coalesce(c.quantity, 0), c.blocked_at IS NOT NULL, o.included, o.cap
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


def upgrade() -> None:
    h.grant("notification_deliveries", h.APP_ROLE, "INSERT")
    op.execute(QUOTA_ROW_FUNCTION)
    op.execute("REVOKE ALL ON FUNCTION usage_quota_row(uuid, text) FROM PUBLIC")
    op.execute(
        f"GRANT EXECUTE ON FUNCTION usage_quota_row(uuid, text) TO {h.APP_ROLE}, {h.WORKER_ROLE}"
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS usage_quota_row(uuid, text)")
    op.execute(f"REVOKE INSERT ON notification_deliveries FROM {h.APP_ROLE}")
