"""credit_notes.method: a credit note refunds the card or credits the balance (ADR 0020)

`refund` (the card the invoice was paid with, through Stripe) or `credit_balance` (the
subscription's credit balance, which the next invoices use first). Existing credit notes are
refunds.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04 12:35:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "credit_notes",
        sa.Column("method", sa.Text(), server_default=sa.text("'refund'"), nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_credit_notes_method"), "credit_notes", "method IN ('refund', 'credit_balance')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_credit_notes_method"), "credit_notes", type_="check")
    op.drop_column("credit_notes", "method")
