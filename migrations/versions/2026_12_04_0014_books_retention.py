"""an erased tenant's books leave after the legal retention period; audit functions record
before/after

1. `tenants.erased_at`: when the erasure replaced the tenant's personal data (ADR 0018). The
   invoices, amounts, numbers and audit rows it kept stay until the legal retention period has
   passed since then.
2. `tenant_books_purge(tenant, before, actor)`: deletes every row of a tenant erased before
   `before`, in every table (children first), its audit rows included, then the tenant itself,
   and records that it did in a row of its own (no tenant: the tenant is gone). A tenant not
   erased, or erased later than `before`, is left alone (the answer is 0). SECURITY DEFINER;
   only the worker may execute it.
3. The purge and redaction functions' own audit rows carry `before` and `after` like every
   other row (ADR 0019).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04 11:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations import helpers as h

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every table holding a tenant's rows, children before parents (foreign keys).
TENANT_TABLES = (
    "invoice_items",
    "dunning_attempts",
    "subscription_changes",
    "notification_deliveries",
    "invoices",
    "webhook_events",
    "usage_period_counters",
    "usage_events",
    "usage_daily_totals",
    "tenant_rate_limits",
    "subscriptions",
    "payment_methods",
    "notification_endpoints",
    "grace_periods",
    "entitlement_overrides",
    "api_keys",
)

BOOKS_PURGE = h.books_purge_function(TENANT_TABLES)

AUDIT_PURGE = """
CREATE OR REPLACE FUNCTION audit_log_purge(p_before timestamptz, p_actor text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
  purged bigint;
BEGIN
  PERFORM set_config('billing.audit_purge', 'on', true);
  DELETE FROM audit_log WHERE created_at < p_before;
  GET DIAGNOSTICS purged = ROW_COUNT;
  PERFORM set_config('billing.audit_purge', 'off', true);
  INSERT INTO audit_log (tenant_id, actor, action, subject_type, subject_id, details)
  VALUES (NULL, p_actor, 'audit_log.purged', 'audit_log', NULL,
          jsonb_build_object('before', jsonb_build_object('rows_older', purged),
                             'after', jsonb_build_object('rows_older', 0),
                             'cutoff', p_before, 'rows', purged));
  RETURN purged;
END $$
"""

REDACT = """
CREATE OR REPLACE FUNCTION audit_log_redact(p_tenant uuid, p_terms text[], p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
  term text;
  escaped text;
  changed bigint := 0;
  n bigint;
BEGIN
  PERFORM set_config('billing.audit_redact', 'on', true);
  FOREACH term IN ARRAY p_terms LOOP
    IF term IS NULL OR length(term) < 3 THEN
      CONTINUE;
    END IF;
    -- The term as it appears inside a JSON string (quotes and backslashes escaped).
    escaped := substr(to_json(term)::text, 2, length(to_json(term)::text) - 2);
    UPDATE audit_log
       SET details = replace(details::text, escaped, '[erased]')::jsonb
     WHERE tenant_id = p_tenant AND strpos(details::text, escaped) > 0;
    GET DIAGNOSTICS n = ROW_COUNT;
    changed := changed + n;
  END LOOP;
  PERFORM set_config('billing.audit_redact', 'off', true);
  INSERT INTO audit_log (tenant_id, actor, action, subject_type, subject_id, details)
  VALUES (p_tenant, p_actor, 'audit_log.redacted', 'tenant', p_tenant::text,
          jsonb_build_object('rows', changed,
                             'before', jsonb_build_object('rows_with_personal_data', changed),
                             'after', jsonb_build_object('rows_with_personal_data', 0)));
  RETURN changed;
END $$
"""


def upgrade() -> None:
    op.add_column("tenants", sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(BOOKS_PURGE)
    op.execute("REVOKE ALL ON FUNCTION tenant_books_purge(uuid, timestamptz, text) FROM PUBLIC")
    op.execute(
        f"GRANT EXECUTE ON FUNCTION tenant_books_purge(uuid, timestamptz, text) TO {h.WORKER_ROLE}"
    )
    op.execute(AUDIT_PURGE)
    op.execute(REDACT)


def downgrade() -> None:
    op.execute("DROP FUNCTION tenant_books_purge(uuid, timestamptz, text)")
    op.drop_column("tenants", "erased_at")
