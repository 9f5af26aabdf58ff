"""Shared SQL for migrations: roles, row-level security, grants, immutability triggers.

Kept as plain functions of table names so an old migration keeps meaning what it meant even when
the live table metadata moves on.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

APP_ROLE = "billing_app"
WORKER_ROLE = "billing_worker"

TENANT_SETTING = "app.tenant_id"


def create_roles() -> None:
    """`billing_app`: the API's login; RLS applies to it. `billing_worker`: background work
    (Temporal activities, webhook inbox, operator endpoints); BYPASSRLS because it acts across
    tenants. Roles are cluster-wide, so they are created only when missing and never dropped by a
    downgrade (another database of the cluster may use them)."""
    for role, bypass in ((APP_ROLE, "NOBYPASSRLS"), (WORKER_ROLE, "BYPASSRLS")):
        op.execute(
            f"""
            DO $$ BEGIN
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE {bypass};
              END IF;
            END $$;
            """
        )
    op.execute(
        f"""
        DO $$ BEGIN
          EXECUTE format('GRANT CONNECT ON DATABASE %I TO {APP_ROLE}, {WORKER_ROLE}',
                         current_database());
        END $$;
        """
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {APP_ROLE}, {WORKER_ROLE}")


def revoke_roles() -> None:
    op.execute(
        f"""
        DO $$ BEGIN
          EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM {APP_ROLE}, {WORKER_ROLE}',
                         current_database());
        END $$;
        """
    )
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {APP_ROLE}, {WORKER_ROLE}")


def create_current_tenant_function() -> None:
    # NULLIF: after a transaction that used SET LOCAL, the setting reads '' (not NULL) for the
    # rest of the session; both mean "no tenant", which matches no row.
    op.execute(
        f"""
        CREATE FUNCTION app_current_tenant() RETURNS uuid
        LANGUAGE sql STABLE PARALLEL SAFE AS
        $$ SELECT NULLIF(current_setting('{TENANT_SETTING}', true), '')::uuid $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION forbid_modification() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION '% rows are immutable (% refused)', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'insufficient_privilege';
        END $$
        """
    )


def drop_current_tenant_function() -> None:
    op.execute("DROP FUNCTION IF EXISTS forbid_modification()")
    op.execute("DROP FUNCTION IF EXISTS app_current_tenant()")


def enable_tenant_rls(table: str, column: str = "tenant_id") -> None:
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} "
        f"USING ({column} = app_current_tenant()) "
        f"WITH CHECK ({column} = app_current_tenant())"
    )


def make_immutable(table: str) -> None:
    op.execute(
        f"CREATE TRIGGER {table}_immutable BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION forbid_modification()"
    )


def grant(table: str, role: str, privileges: str) -> None:
    op.execute(f"GRANT {privileges} ON {table} TO {role}")


def books_purge_function(tables: Sequence[str]) -> str:
    """`tenant_books_purge(tenant, before, actor)` over `tables` (children before parents):
    ADR 0018. Migration 0014 created it; a migration adding a tenant table re-creates it with
    the table in its place (CREATE OR REPLACE)."""
    listed = ", ".join(f"'{t}'" for t in tables)
    return f"""
CREATE OR REPLACE FUNCTION tenant_books_purge(p_tenant uuid, p_before timestamptz, p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $$
DECLARE
  erased timestamptz;
  tbl text;
  n bigint;
  total bigint := 0;
  counts jsonb := '{{}}'::jsonb;
BEGIN
  SELECT erased_at INTO erased FROM tenants WHERE id = p_tenant FOR UPDATE;
  IF erased IS NULL OR erased >= p_before THEN
    RETURN 0;
  END IF;
  FOREACH tbl IN ARRAY ARRAY[{listed}] LOOP
    EXECUTE format('DELETE FROM %I WHERE tenant_id = $1', tbl) USING p_tenant;
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := counts || jsonb_build_object(tbl, n);
    total := total + n;
  END LOOP;
  PERFORM set_config('billing.audit_purge', 'on', true);
  DELETE FROM audit_log WHERE tenant_id = p_tenant;
  GET DIAGNOSTICS n = ROW_COUNT;
  PERFORM set_config('billing.audit_purge', 'off', true);
  counts := counts || jsonb_build_object('audit_log', n);
  total := total + n;
  DELETE FROM tenants WHERE id = p_tenant;
  INSERT INTO audit_log (tenant_id, actor, action, subject_type, subject_id, details)
  VALUES (NULL, p_actor, 'tenant.books_purged', 'tenant', p_tenant::text,
          jsonb_build_object('before', jsonb_build_object('erased_at', erased, 'rows', counts),
                             'after', jsonb_build_object('rows', 0),
                             'retention_cutoff', p_before));
  RETURN total + 1;
END $$
"""
