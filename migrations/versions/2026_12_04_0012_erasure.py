"""erasure: redacting a tenant's personal data out of its audit rows

The audit log is append-only, but an erased tenant's name or email may sit in the details of
its rows (`tenant.created` records the name). `audit_log_redact(tenant, terms)` replaces each
term in the details of that tenant's rows with `[erased]` and records that it did; the row
trigger lets an UPDATE through only inside it (the flag `billing.audit_redact`), and only one
that changes nothing but the details. SECURITY DEFINER; only the worker may execute it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 10:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from migrations import helpers as h

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARD = """
CREATE OR REPLACE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('billing.audit_purge', true) = 'on' THEN
    RETURN OLD;
  END IF;
  IF TG_OP = 'UPDATE' AND current_setting('billing.audit_redact', true) = 'on'
     AND NEW.id = OLD.id AND NEW.tenant_id IS NOT DISTINCT FROM OLD.tenant_id
     AND NEW.actor = OLD.actor AND NEW.action = OLD.action
     AND NEW.subject_type = OLD.subject_type
     AND NEW.subject_id IS NOT DISTINCT FROM OLD.subject_id
     AND NEW.request_id IS NOT DISTINCT FROM OLD.request_id
     AND NEW.created_at = OLD.created_at THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'audit_log rows are immutable (% refused)', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$
"""

OLD_GUARD = """
CREATE OR REPLACE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('billing.audit_purge', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit_log rows are immutable (% refused)', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$
"""

REDACT = """
CREATE FUNCTION audit_log_redact(p_tenant uuid, p_terms text[], p_actor text) RETURNS bigint
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
          jsonb_build_object('rows', changed));
  RETURN changed;
END $$
"""


def upgrade() -> None:
    op.execute(GUARD)
    op.execute(REDACT)
    op.execute("REVOKE ALL ON FUNCTION audit_log_redact(uuid, text[], text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION audit_log_redact(uuid, text[], text) TO {h.WORKER_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION audit_log_redact(uuid, text[], text)")
    op.execute(OLD_GUARD)
