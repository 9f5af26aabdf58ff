"""invoice numbers: sequential and gapless per seller and series, allocated at finalisation

1. `invoice_number_series`: the last number of each (seller, series). A series is the
   invoice's kind and year: `INV-2026` for invoices with something to pay, `ZERO-2026` for
   zero-total ones (ADR 0015). Allocating a number updates the series row in the transaction
   that finalises the invoice, so a rolled-back finalisation gives its number back and two
   finalisations never get the same one (the row lock serialises them).
2. `invoices.number`, unique, NULL while the invoice is a draft. Invoices finalised before this
   migration are numbered now, in the order they were created.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 09:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations import helpers as h

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCOPED_ROLE = "billing_worker_scoped"

BACKFILL = """
WITH numbered AS (
  SELECT id,
         (CASE WHEN total = 0 THEN 'ZERO' ELSE 'INV' END) || '-'
           || extract(year FROM coalesce(period_start, created_at) AT TIME ZONE 'UTC')::int
           AS series,
         row_number() OVER (
           PARTITION BY (CASE WHEN total = 0 THEN 'ZERO' ELSE 'INV' END),
                        extract(year FROM coalesce(period_start, created_at) AT TIME ZONE 'UTC')
           ORDER BY created_at, id
         ) AS n
  FROM invoices WHERE status <> 'draft'
), numbers AS (
  UPDATE invoices SET number = numbered.series || '-' || lpad(numbered.n::text, 6, '0')
  FROM numbered WHERE invoices.id = numbered.id
  RETURNING numbered.series, numbered.n
)
INSERT INTO invoice_number_series (seller, series, last_value)
SELECT 'default', series, max(n) FROM numbers GROUP BY series
"""


def upgrade() -> None:
    op.create_table(
        "invoice_number_series",
        sa.Column("seller", sa.Text(), nullable=False),
        sa.Column("series", sa.Text(), nullable=False),
        sa.Column("last_value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("seller", "series", name=op.f("pk_invoice_number_series")),
        sa.CheckConstraint("last_value > 0", name=op.f("ck_invoice_number_series_last_value")),
    )
    for role in (h.WORKER_ROLE, SCOPED_ROLE):
        h.grant("invoice_number_series", role, "SELECT, INSERT, UPDATE")
    op.add_column("invoices", sa.Column("number", sa.Text(), nullable=True))
    op.create_unique_constraint(op.f("uq_invoices_number"), "invoices", ["number"])
    op.execute(BACKFILL)


def downgrade() -> None:
    op.drop_constraint(op.f("uq_invoices_number"), "invoices", type_="unique")
    op.drop_column("invoices", "number")
    op.drop_table("invoice_number_series")
