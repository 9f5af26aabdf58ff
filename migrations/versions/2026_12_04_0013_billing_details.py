"""tenants.billing_details: what the buyer block of the tenant's invoice PDFs shows

The tenant's own billing name, address lines, tax id and email (ADR 0015), set by the tenant
(`PUT /api/billing/account/billing-details`); empty means the tenant's name and email.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 10:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tenants",
        sa.Column(
            "billing_details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    # The API's role updates its own tenant's row for this column only.
    op.execute("GRANT UPDATE (billing_details, updated_at) ON tenants TO billing_app")


def downgrade() -> None:
    op.execute("REVOKE UPDATE (billing_details, updated_at) ON tenants FROM billing_app")
    op.drop_column("tenants", "billing_details")
