"""disputes: an invoice's dispute, and a tenant suspended for one (ADR 0021)

1. `invoices.dispute_status` (null, `open`, `won`, `lost`) and `invoices.dispute_id` (the
   Stripe dispute), set from `charge.dispute.*` events.
2. `tenants.suspension_reason` may be `dispute`: the `suspend` dispute policy suspends a tenant
   while one of its invoices is disputed, and only such a suspension is lifted when the dispute
   closes.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04 12:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("invoices", sa.Column("dispute_status", sa.Text(), nullable=True))
    op.add_column("invoices", sa.Column("dispute_id", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_invoices_dispute_status"),
        "invoices",
        "dispute_status IN ('open', 'won', 'lost')",
    )
    op.drop_constraint(op.f("ck_tenants_suspension_reason"), "tenants", type_="check")
    op.create_check_constraint(
        op.f("ck_tenants_suspension_reason"),
        "tenants",
        "suspension_reason IN ('payment', 'operator', 'dispute')",
    )


def downgrade() -> None:
    op.execute(
        "UPDATE tenants SET suspension_reason = 'operator' WHERE suspension_reason = 'dispute'"
    )
    op.drop_constraint(op.f("ck_tenants_suspension_reason"), "tenants", type_="check")
    op.create_check_constraint(
        op.f("ck_tenants_suspension_reason"),
        "tenants",
        "suspension_reason IN ('payment', 'operator')",
    )
    op.drop_constraint(op.f("ck_invoices_dispute_status"), "invoices", type_="check")
    op.drop_column("invoices", "dispute_id")
    op.drop_column("invoices", "dispute_status")
