"""usage: the API may queue quota notifications in the ingestion transaction

Quota notifications (80 % / 100 %) are written to the notifications outbox in the same
transaction that moves the period counter, which runs as the RLS-enforced app role.

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-24 00:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from migrations import helpers as h

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    h.grant("notification_deliveries", h.APP_ROLE, "INSERT")


def downgrade() -> None:
    op.execute(f"REVOKE INSERT ON notification_deliveries FROM {h.APP_ROLE}")
