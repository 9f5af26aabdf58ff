"""credit_notes: credit against a paid invoice, refunded to the card (ADR 0020)

One row per credit note: its invoice, amount (minor units, > 0), reason, number (series
`CN-{year}`, gapless like invoices, from `invoice_number_series`), where it came from (an
operator through the API, or a refund made in the Stripe dashboard and seen in
`charge.refunded`), and the refund: its Stripe id (unique, so one Stripe refund is one credit
note), status and time. `(tenant_id, idempotency_key)` is unique: the client's key makes the
request idempotent. Row-level security per tenant; the purge of an erased tenant's books
deletes them with the rest.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations import helpers as h

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCOPED_ROLE = "billing_worker_scoped"

# The books purge (migration 0014) deletes credit notes before their invoices.
BEFORE = (
    "invoice_items",
    "dunning_attempts",
    "subscription_changes",
    "notification_deliveries",
    "invoices",
    "webhook_events",
    "usage_period_counters",
    "usage_events",
    "usage_daily_totals",
    "tenant_rate_limits",
    "subscriptions",
    "payment_methods",
    "notification_endpoints",
    "grace_periods",
    "entitlement_overrides",
    "api_keys",
)
AFTER = ("credit_notes", *BEFORE)


def upgrade() -> None:
    op.create_table(
        "credit_notes",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("tenant_id", sa.UUID(), nullable=False),
        sa.Column("invoice_id", sa.UUID(), nullable=False),
        sa.Column("number", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        # operator | stripe
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        # pending | succeeded | failed
        sa.Column("refund_status", sa.Text(), nullable=False),
        sa.Column("stripe_refund_id", sa.Text(), nullable=True),
        sa.Column("refunded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),  # fmt: skip
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_credit_notes_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name=op.f("fk_credit_notes_invoice_id_invoices"),
            ondelete="RESTRICT",
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_notes")),
        sa.UniqueConstraint("number", name=op.f("uq_credit_notes_number")),
        sa.UniqueConstraint("stripe_refund_id", name=op.f("uq_credit_notes_stripe_refund_id")),
        sa.UniqueConstraint(
            "tenant_id", "idempotency_key", name=op.f("uq_credit_notes_tenant_id_idempotency_key")
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_credit_notes_amount")),
        sa.CheckConstraint("source IN ('operator', 'stripe')", name=op.f("ck_credit_notes_source")),
        sa.CheckConstraint(
            "refund_status IN ('pending', 'succeeded', 'failed')",
            name=op.f("ck_credit_notes_refund_status"),
        ),
    )
    op.create_index(op.f("ix_credit_notes_tenant_id"), "credit_notes", ["tenant_id"])
    op.create_index(op.f("ix_credit_notes_invoice_id"), "credit_notes", ["invoice_id"])
    h.enable_tenant_rls("credit_notes")
    h.grant("credit_notes", h.WORKER_ROLE, "SELECT, INSERT, UPDATE")
    h.grant("credit_notes", h.APP_ROLE, "SELECT")
    h.grant("credit_notes", SCOPED_ROLE, "SELECT, INSERT, UPDATE")
    op.execute(h.books_purge_function(AFTER))


def downgrade() -> None:
    op.execute(h.books_purge_function(BEFORE))
    op.drop_table("credit_notes")
