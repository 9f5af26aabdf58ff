"""coupons and promotion codes (ADR 0023)

The catalog of coupons operators manage: a percentage (1-100) or a fixed amount in one currency
off the base fee, the overage or both, for `once`, `repeating` (`duration_periods` billing
periods) or `forever`, with an optional expiry and maximum redemptions. Promotion codes point at
a coupon with limits of their own. `redemptions` only grows, by a conditional UPDATE that checks
the limit in the same statement, so concurrent sign-ups never redeem past it. Not tenant data:
no row-level security; the API reads them, the worker role writes them.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 12:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from migrations import helpers as h

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _common() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("max_redemptions", sa.Integer(), nullable=True),
        sa.Column("redemptions", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),  # fmt: skip
    ]


def upgrade() -> None:
    op.create_table(
        "coupons",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("percent_off", sa.Integer(), nullable=True),
        sa.Column("amount_off", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("applies_to", sa.Text(), nullable=False),
        sa.Column("duration", sa.Text(), nullable=False),
        sa.Column("duration_periods", sa.Integer(), nullable=True),
        *_common(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_coupons")),
        sa.UniqueConstraint("code", name=op.f("uq_coupons_code")),
        sa.CheckConstraint(
            "(percent_off IS NULL) <> (amount_off IS NULL)", name=op.f("ck_coupons_one_kind")
        ),
        sa.CheckConstraint(
            "percent_off IS NULL OR percent_off BETWEEN 1 AND 100", name=op.f("ck_coupons_percent")
        ),
        sa.CheckConstraint(
            "amount_off IS NULL OR (amount_off > 0 AND currency IS NOT NULL)",
            name=op.f("ck_coupons_amount"),
        ),
        sa.CheckConstraint(
            "applies_to IN ('base', 'overage', 'both')", name=op.f("ck_coupons_applies_to")
        ),
        sa.CheckConstraint(
            "duration IN ('once', 'repeating', 'forever') AND (duration = 'repeating') = "
            "(duration_periods IS NOT NULL) AND (duration_periods IS NULL OR duration_periods > 0)",
            name=op.f("ck_coupons_duration"),
        ),
        sa.CheckConstraint(
            "max_redemptions IS NULL OR (max_redemptions > 0 AND redemptions <= max_redemptions)",
            name=op.f("ck_coupons_redemptions"),
        ),
    )
    op.create_table(
        "promotion_codes",
        sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("coupon_id", sa.UUID(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        *_common(),
        sa.ForeignKeyConstraint(
            ["coupon_id"],
            ["coupons.id"],
            name=op.f("fk_promotion_codes_coupon_id_coupons"),
            ondelete="RESTRICT",
        ),  # fmt: skip
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promotion_codes")),
        sa.UniqueConstraint("code", name=op.f("uq_promotion_codes_code")),
        sa.CheckConstraint(
            "max_redemptions IS NULL OR (max_redemptions > 0 AND redemptions <= max_redemptions)",
            name=op.f("ck_promotion_codes_redemptions"),
        ),
    )
    for table in ("coupons", "promotion_codes"):
        h.grant(table, h.WORKER_ROLE, "SELECT, INSERT, UPDATE")
        # The API counts a redemption in the transaction that writes the subscription.
        h.grant(table, h.APP_ROLE, "SELECT, UPDATE (redemptions)")
    # The coupon a subscription was signed up with: a repeated sign-up request rebuilds the
    # same discount from it without counting another redemption.
    op.add_column("subscriptions", sa.Column("coupon_code", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("subscriptions", "coupon_code")
    op.drop_table("promotion_codes")
    op.drop_table("coupons")
