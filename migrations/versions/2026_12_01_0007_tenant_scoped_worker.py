"""tenant-scoped worker writes: the `billing_worker_scoped` role, payment methods keyed per
tenant, and why a tenant is suspended

1. `billing_worker_scoped` is NOLOGIN and NOBYPASSRLS, and is granted to `billing_worker`. The
   worker's tenant transactions (`Database.tenant_transaction`) `SET LOCAL ROLE` to it, so the
   `tenant_isolation` policy applies to every write an activity makes for one tenant: a write
   with another tenant's ids matches no row, or is refused by the policy's WITH CHECK. The login
   role stays BYPASSRLS for the jobs that really span tenants (inbox, re-dispatchers,
   reconciliation, sweepers, key lookup, operator tenant admin).
2. `payment_methods` is unique on `(tenant_id, stripe_payment_method_id)`, not on the global
   Stripe id alone: an upsert keyed on the Stripe id can no longer land on another tenant's row.
3. `tenants.suspension_reason`: `payment` (an unpaid invoice's grace window expired) or
   `operator` (an operator ended that window early); NULL while the tenant is active.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 14:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from migrations import helpers as h

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCOPED_ROLE = "billing_worker_scoped"
APPEND_ONLY = ("audit_log", "plans", "entitlements")


def upgrade() -> None:
    op.execute(
        f"""
        DO $$ BEGIN
          IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SCOPED_ROLE}') THEN
            CREATE ROLE {SCOPED_ROLE} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
          END IF;
        END $$;
        """
    )
    op.execute(f"GRANT {SCOPED_ROLE} TO {h.WORKER_ROLE}")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {SCOPED_ROLE}")
    # What the worker may do, narrowed by RLS to the transaction's tenant.
    op.execute(
        "DO $$ DECLARE t text; BEGIN "
        "FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND tablename <> 'alembic_version' LOOP "
        f"EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO {SCOPED_ROLE}', t); "
        "END LOOP; END $$"
    )
    for table in APPEND_ONLY:
        op.execute(f"REVOKE UPDATE, DELETE ON {table} FROM {SCOPED_ROLE}")
    op.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {SCOPED_ROLE}")
    op.execute(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO {SCOPED_ROLE}")

    op.drop_constraint(
        "uq_payment_methods_stripe_payment_method_id", "payment_methods", type_="unique"
    )
    op.create_unique_constraint(
        "uq_payment_methods_tenant_id_stripe_payment_method_id",
        "payment_methods",
        ["tenant_id", "stripe_payment_method_id"],
    )

    op.execute("ALTER TABLE tenants ADD COLUMN suspension_reason text")
    op.execute("UPDATE tenants SET suspension_reason = 'payment' WHERE access_status = 'suspended'")
    op.execute(
        "ALTER TABLE tenants ADD CONSTRAINT ck_tenants_suspension_reason "
        "CHECK (suspension_reason IN ('payment', 'operator'))"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE tenants DROP CONSTRAINT ck_tenants_suspension_reason")
    op.execute("ALTER TABLE tenants DROP COLUMN suspension_reason")
    op.drop_constraint(
        "uq_payment_methods_tenant_id_stripe_payment_method_id", "payment_methods", type_="unique"
    )
    op.create_unique_constraint(
        "uq_payment_methods_stripe_payment_method_id",
        "payment_methods",
        ["stripe_payment_method_id"],
    )
    # Roles are cluster-wide: revoke what this database granted, keep the role.
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {SCOPED_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {SCOPED_ROLE}")
    op.execute(f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM {SCOPED_ROLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {SCOPED_ROLE}")
