"""credit_notes: `reduce_amount_due`, a credit note that lowers an open invoice's amount due
through a Stripe credit note (ADR 0020), and that Stripe credit note's id.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04 13:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_credit_notes_method"), "credit_notes", type_="check")
    op.create_check_constraint(
        op.f("ck_credit_notes_method"),
        "credit_notes",
        "method IN ('refund', 'credit_balance', 'reduce_amount_due')",
    )
    op.add_column("credit_notes", sa.Column("stripe_credit_note_id", sa.Text(), nullable=True))
    op.create_unique_constraint(
        op.f("uq_credit_notes_stripe_credit_note_id"), "credit_notes", ["stripe_credit_note_id"]
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("uq_credit_notes_stripe_credit_note_id"), "credit_notes", type_="unique"
    )
    op.drop_column("credit_notes", "stripe_credit_note_id")
    op.drop_constraint(op.f("ck_credit_notes_method"), "credit_notes", type_="check")
    op.create_check_constraint(
        op.f("ck_credit_notes_method"), "credit_notes", "method IN ('refund', 'credit_balance')"
    )
