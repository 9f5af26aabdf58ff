"""per-tenant API rate limits, shared by every API replica

1. `rate_limit_windows`: for each subject (`tenant:{id}` for a tenant's API keys, `ip:{addr}`
   for the Stripe webhook endpoint), route class and fixed window, how many requests the API
   processes together have been granted. A process leases a share of the window's limit in one
   statement and serves it from memory (`adapters/db/rate_limits.py`); the sum of the leases
   never exceeds the limit, so the limit holds across replicas. Not a tenant table: its rows are
   bookkeeping keyed by subject, written by the worker role the API uses for key lookups.
2. `tenant_rate_limits`: per-tenant overrides of the defaults in settings, per route class,
   set by operators (row-level security like every tenant table).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations import helpers as h

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCOPED_ROLE = "billing_worker_scoped"
CLASSES = "'ingest', 'check', 'command', 'read'"


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.create_table(
        "rate_limit_windows",
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("route_class", sa.Text(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("granted", sa.Integer(), nullable=False),
        sa.Column("last_lease", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "subject", "route_class", "window_start", name=op.f("pk_rate_limit_windows")
        ),
        sa.CheckConstraint("granted >= 0", name=op.f("ck_rate_limit_windows_granted")),
    )
    op.create_index(
        op.f("ix_rate_limit_windows_window_start"), "rate_limit_windows", ["window_start"]
    )
    h.grant("rate_limit_windows", h.WORKER_ROLE, "SELECT, INSERT, UPDATE, DELETE")

    op.create_table(
        "tenant_rate_limits",
        sa.Column("tenant_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("route_class", sa.Text(), nullable=False),
        sa.Column("per_window", sa.Integer(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_tenant_rate_limits_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", "route_class", name=op.f("pk_tenant_rate_limits")),
        sa.CheckConstraint("per_window >= 0", name=op.f("ck_tenant_rate_limits_per_window")),
        sa.CheckConstraint(
            f"route_class IN ({CLASSES})", name=op.f("ck_tenant_rate_limits_route_class")
        ),
    )
    h.enable_tenant_rls("tenant_rate_limits")
    h.grant("tenant_rate_limits", h.WORKER_ROLE, "SELECT, INSERT, UPDATE, DELETE")
    h.grant("tenant_rate_limits", h.APP_ROLE, "SELECT")
    h.grant("tenant_rate_limits", SCOPED_ROLE, "SELECT, INSERT, UPDATE, DELETE")


def downgrade() -> None:
    op.drop_table("tenant_rate_limits")
    op.drop_index(op.f("ix_rate_limit_windows_window_start"), table_name="rate_limit_windows")
    op.drop_table("rate_limit_windows")
