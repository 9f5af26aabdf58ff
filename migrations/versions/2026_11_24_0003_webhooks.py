"""Webhook inbox replay counter (replay n runs as its own workflow id) and notification
deliveries' `started_at` (rows without a delivery workflow yet, for the re-dispatcher).

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "webhook_events",
        sa.Column("replay_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column(
        "notification_deliveries",
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("notification_deliveries", "started_at")
    op.drop_column("webhook_events", "replay_count")
