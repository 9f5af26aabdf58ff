"""the audit trail: request ids, and a retention purge that is the only way rows leave

1. `audit_log.request_id`: the API request a row came from (the `X-Request-Id` every answer
   carries), NULL for work outside a request (workflows, webhooks processed later).
2. `audit_log_purge(before)`: deletes rows older than `before` and records that it did, in one
   statement's transaction. It is SECURITY DEFINER (it runs as the table's owner) and the only
   path by which a row can leave: the app and worker roles have no DELETE on the table, and the
   row trigger refuses UPDATE always and DELETE unless the purge function set
   `billing.audit_purge` for its own transaction. The worker may EXECUTE it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations import helpers as h

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUARD = """
CREATE FUNCTION audit_log_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('billing.audit_purge', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit_log rows are immutable (% refused)', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END $$
"""

PURGE = """
CREATE FUNCTION audit_log_purge(p_before timestamptz, p_actor text) RETURNS bigint
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
          jsonb_build_object('before', p_before, 'rows', purged));
  RETURN purged;
END $$
"""


def upgrade() -> None:
    op.add_column("audit_log", sa.Column("request_id", sa.Text(), nullable=True))
    op.create_index(op.f("ix_audit_log_created_at"), "audit_log", ["created_at"])
    op.execute(GUARD)
    op.execute("DROP TRIGGER audit_log_immutable ON audit_log")
    op.execute(
        "CREATE TRIGGER audit_log_immutable BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_guard()"
    )
    op.execute(PURGE)
    op.execute("REVOKE ALL ON FUNCTION audit_log_purge(timestamptz, text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION audit_log_purge(timestamptz, text) TO {h.WORKER_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION audit_log_purge(timestamptz, text)")
    op.execute("DROP TRIGGER audit_log_immutable ON audit_log")
    h.make_immutable("audit_log")
    op.execute("DROP FUNCTION audit_log_guard()")
    op.drop_index(op.f("ix_audit_log_created_at"), table_name="audit_log")
    op.drop_column("audit_log", "request_id")
