"""The Postgres schema as SQLAlchemy Core tables: the system of record.

Alembic migrations build the real schema (with row-level security, roles and triggers that Core
does not model); `alembic check` keeps these definitions and the migrations from drifting.

Conventions: every tenant-owned table has a `tenant_id` column and an RLS policy keyed on the
per-transaction setting `app.tenant_id` (see migrations). Money columns are BIGINT minor units
next to a `currency`; usage quantities are NUMERIC so gauges and fractional units stay exact.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

QUANTITY = Numeric(24, 6)


def _created_at() -> Column[object]:
    return Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def _updated_at() -> Column[object]:
    return Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now())


def _uuid_pk() -> Column[object]:
    return Column("id", UUID(as_uuid=True), primary_key=True, server_default=func.gen_random_uuid())


def _tenant_fk(nullable: bool = False, index: bool = True) -> Column[object]:
    return Column(
        "tenant_id",
        UUID(as_uuid=True),
        ForeignKey("tenants.id", ondelete="RESTRICT"),
        nullable=nullable,
        index=index,
    )


def _metadata_col() -> Column[object]:
    return Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb"))


tenants = Table(
    "tenants",
    metadata,
    _uuid_pk(),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=True),
    # Access status the quota check reads: active | suspended (payment overdue) | closed
    Column("access_status", Text, nullable=False, server_default="active"),
    Column("stripe_customer_id", Text, nullable=True, unique=True),
    _metadata_col(),
    _created_at(),
    _updated_at(),
    # Why access is suspended: payment (an unpaid invoice's grace window expired) or operator
    # (an operator ended that window early); NULL while active.
    Column("suspension_reason", Text, nullable=True),
    # The buyer block of its invoice PDFs: name, address (lines), tax_id, email (ADR 0015).
    Column("billing_details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # When the erasure tombstoned the tenant; its books leave after the legal retention.
    Column("erased_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("access_status IN ('active', 'suspended', 'closed')", name="access_status"),
    CheckConstraint(
        "suspension_reason IN ('payment', 'operator', 'dispute')", name="suspension_reason"
    ),
)

api_keys = Table(
    "api_keys",
    metadata,
    _uuid_pk(),
    # NULL tenant: an operator key (scope billing.operator), not bound to a tenant.
    _tenant_fk(nullable=True),
    Column("name", Text, nullable=False),
    # First characters of the key, shown in listings so a person can tell keys apart.
    Column("prefix", Text, nullable=False),
    Column("key_hash", LargeBinary, nullable=False, unique=True),
    Column("scopes", ARRAY(Text), nullable=False),
    Column("created_by", Text, nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    _created_at(),
    _updated_at(),
)

plans = Table(
    "plans",
    metadata,
    _uuid_pk(),
    Column("code", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("currency", Text, nullable=False),
    Column("trial_days", Integer, nullable=False),
    Column("monthly_price", BigInteger, nullable=False),
    Column("annual_price", BigInteger, nullable=False),
    # The whole plan as the catalog defined it (billing.catalog.Plan.to_dict()): the snapshot
    # copied into workflow inputs.
    Column("definition", JSONB, nullable=False),
    Column("fingerprint", Text, nullable=False),
    _created_at(),
    UniqueConstraint("code", "version"),
    UniqueConstraint("code", "fingerprint"),
    CheckConstraint("monthly_price >= 0 AND annual_price >= 0", name="prices_non_negative"),
)

entitlements = Table(
    "entitlements",
    metadata,
    _uuid_pk(),
    Column("plan_id", UUID(as_uuid=True), ForeignKey("plans.id"), nullable=False),
    Column("metric", Text, nullable=False),
    # NULL included: unlimited
    Column("included", BigInteger, nullable=True),
    Column("cap", Text, nullable=False),
    Column("overage_unit_price", BigInteger, nullable=False),
    Column("overage_unit_size", BigInteger, nullable=False),
    _created_at(),
    UniqueConstraint("plan_id", "metric"),
    CheckConstraint("cap IN ('hard', 'soft')", name="cap"),
)

entitlement_overrides = Table(
    "entitlement_overrides",
    metadata,
    _uuid_pk(),
    _tenant_fk(),
    Column("metric", Text, nullable=False),
    Column("included", BigInteger, nullable=True),
    Column("cap", Text, nullable=True),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    _created_at(),
    _updated_at(),
    UniqueConstraint("tenant_id", "metric"),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    _uuid_pk(),
    _tenant_fk(),
    Column("plan_id", UUID(as_uuid=True), ForeignKey("plans.id"), nullable=False),
    Column("plan_code", Text, nullable=False),
    Column("interval", Text, nullable=False),
    Column("currency", Text, nullable=False),
    # trialing | active | past_due | paused | canceled | incomplete
    Column("status", Text, nullable=False),
    Column("workflow_id", Text, nullable=False, unique=True),
    Column("current_period_start", DateTime(timezone=True), nullable=True),
    Column("current_period_end", DateTime(timezone=True), nullable=True),
    Column("trial_end", DateTime(timezone=True), nullable=True),
    Column("cancel_at_period_end", Boolean, nullable=False, server_default=text("false")),
    Column("canceled_at", DateTime(timezone=True), nullable=True),
    Column("paused_at", DateTime(timezone=True), nullable=True),
    Column("resume_at", DateTime(timezone=True), nullable=True),
    Column("pending_change", JSONB, nullable=True),
    # The workflow's business clock (business = business_origin + (wall - wall_origin) *
    # time_scale), so the usage path maps a wall-clock timestamp to business time as the
    # workflow does. NULL origins: business time is wall time.
    Column("clock_wall_origin", DateTime(timezone=True), nullable=True),
    Column("clock_business_origin", DateTime(timezone=True), nullable=True),
    Column("time_scale", Float, nullable=False, server_default=text("1")),
    Column(
        "reactivated_from",
        UUID(as_uuid=True),
        ForeignKey("subscriptions.id"),
        nullable=True,
    ),
    # The coupon redeemed at sign-up (ADR 0023).
    Column("coupon_code", Text, nullable=True),
    # Projection version: the workflow increments it with every write, and a write carrying an
    # older version is ignored, so a retried late activity never overwrites newer state.
    Column("version", BigInteger, nullable=False, server_default=text("0")),
    _metadata_col(),
    _created_at(),
    _updated_at(),
    CheckConstraint("interval IN ('month', 'year')", name="interval"),
    CheckConstraint(
        "status IN ('incomplete', 'trialing', 'active', 'past_due', 'paused', 'canceled')",
        name="status",
    ),
    # At most one live subscription per tenant.
    Index(
        "uq_subscriptions_tenant_id_live",
        "tenant_id",
        unique=True,
        postgresql_where=text("status <> 'canceled'"),
    ),
)

subscription_changes = Table(
    "subscription_changes",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    _tenant_fk(),
    Column(
        "subscription_id",
        UUID(as_uuid=True),
        ForeignKey("subscriptions.id"),
        nullable=False,
        index=True,
    ),
    Column("kind", Text, nullable=False),
    Column("from_status", Text, nullable=True),
    Column("to_status", Text, nullable=True),
    Column("from_plan_code", Text, nullable=True),
    Column("to_plan_code", Text, nullable=True),
    Column("effective_at", DateTime(timezone=True), nullable=False),
    Column("actor", Text, nullable=False),
    # Deterministic key from the workflow, so a retried activity records a change once.
    Column("change_key", Text, nullable=False, unique=True),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _created_at(),
)

usage_events = Table(
    "usage_events",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    _tenant_fk(index=False),
    Column("metric", Text, nullable=False),
    Column("quantity", QUANTITY, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("idempotency_key", Text, nullable=False),
    Column("metadata", JSONB, nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("tenant_id", "idempotency_key"),
    Index("ix_usage_events_tenant_id_metric_occurred_at", "tenant_id", "metric", "occurred_at"),
    CheckConstraint("quantity >= 0", name="quantity_non_negative"),
)

usage_daily_totals = Table(
    "usage_daily_totals",
    metadata,
    _tenant_fk(index=False),
    Column("metric", Text, nullable=False),
    Column("usage_date", Date, nullable=False),
    # sum metrics: the day's sum; gauge metrics: the day's max
    Column("quantity", QUANTITY, nullable=False),
    Column("event_count", BigInteger, nullable=False, server_default=text("0")),
    _updated_at(),
    # The primary key is the (tenant_id, metric, usage_date) index the daily series reads.
    PrimaryKeyConstraint("tenant_id", "metric", "usage_date"),
)

usage_period_counters = Table(
    "usage_period_counters",
    metadata,
    _tenant_fk(index=False),
    Column("metric", Text, nullable=False),
    Column("period_start", DateTime(timezone=True), nullable=False),
    Column("period_end", DateTime(timezone=True), nullable=False),
    Column("quantity", QUANTITY, nullable=False),
    # Highest quota threshold already notified this period (0, 80, 100): notify once each.
    Column("notified_threshold", SmallInteger, nullable=False, server_default=text("0")),
    Column("soft_cap_exceeded_at", DateTime(timezone=True), nullable=True),
    Column("blocked_at", DateTime(timezone=True), nullable=True),
    _updated_at(),
    # One indexed read answers a quota check.
    PrimaryKeyConstraint("tenant_id", "metric", "period_start"),
)

invoices = Table(
    "invoices",
    metadata,
    _uuid_pk(),
    _tenant_fk(),
    Column(
        "subscription_id",
        UUID(as_uuid=True),
        ForeignKey("subscriptions.id"),
        nullable=True,
        index=True,
    ),
    # draft | open | paid | void | uncollectible
    Column("status", Text, nullable=False),
    # subscription_create | subscription_cycle | subscription_update | final
    Column("billing_reason", Text, nullable=False),
    # Business identity of the bill (e.g. "sub:{id}:cycle:{period_start}"): unique, so a period
    # can never be billed twice whatever retries happen.
    Column("billing_key", Text, nullable=False, unique=True),
    Column("currency", Text, nullable=False),
    Column("subtotal", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("amount_paid", BigInteger, nullable=False, server_default=text("0")),
    Column("amount_due", BigInteger, nullable=False),
    Column("period_start", DateTime(timezone=True), nullable=True),
    Column("period_end", DateTime(timezone=True), nullable=True),
    Column("stripe_invoice_id", Text, nullable=True, unique=True),
    Column("hosted_invoice_url", Text, nullable=True),
    Column("invoice_pdf", Text, nullable=True),
    Column("attempt_count", Integer, nullable=False, server_default=text("0")),
    Column("paid_at", DateTime(timezone=True), nullable=True),
    Column("version", BigInteger, nullable=False, server_default=text("0")),
    # INV-2026-000123: allocated when the invoice is finalised (ADR 0015); NULL for a draft.
    Column("number", Text, nullable=True, unique=True),
    # null | open | won | lost: a Stripe dispute on the payment (ADR 0021).
    Column("dispute_status", Text, nullable=True),
    Column("dispute_id", Text, nullable=True),
    _metadata_col(),
    _created_at(),
    _updated_at(),
    Index("ix_invoices_tenant_id_created_at_id", "tenant_id", "created_at", "id"),
    CheckConstraint("status IN ('draft', 'open', 'paid', 'void', 'uncollectible')", name="status"),
    CheckConstraint("dispute_status IN ('open', 'won', 'lost')", name="dispute_status"),
)

invoice_items = Table(
    "invoice_items",
    metadata,
    _uuid_pk(),
    _tenant_fk(),
    Column(
        "invoice_id",
        UUID(as_uuid=True),
        ForeignKey("invoices.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("position", Integer, nullable=False),
    # base | proration_credit | proration_charge | overage | credit
    Column("kind", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("metric", Text, nullable=True),
    Column("quantity", QUANTITY, nullable=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("period_start", DateTime(timezone=True), nullable=True),
    Column("period_end", DateTime(timezone=True), nullable=True),
    Column("stripe_invoice_item_id", Text, nullable=True),
    _created_at(),
    UniqueConstraint("invoice_id", "position"),
)

payment_methods = Table(
    "payment_methods",
    metadata,
    _uuid_pk(),
    _tenant_fk(),
    # Unique per tenant: an upsert keyed on the Stripe id can only ever land on this tenant's row.
    Column("stripe_payment_method_id", Text, nullable=False),
    # Brand, last4 and expiry only: card numbers never reach the engine.
    Column("brand", Text, nullable=True),
    Column("last4", Text, nullable=True),
    Column("exp_month", SmallInteger, nullable=True),
    Column("exp_year", SmallInteger, nullable=True),
    Column("is_default", Boolean, nullable=False, server_default=text("false")),
    Column("detached_at", DateTime(timezone=True), nullable=True),
    _created_at(),
    _updated_at(),
    UniqueConstraint("tenant_id", "stripe_payment_method_id"),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    _uuid_pk(),
    Column("stripe_event_id", Text, nullable=False, unique=True),
    Column("type", Text, nullable=False),
    Column("api_version", Text, nullable=True),
    Column("livemode", Boolean, nullable=False, server_default=text("false")),
    Column("payload", JSONB, nullable=False),
    # received | dispatched | processed | ignored | dead_lettered
    Column("status", Text, nullable=False, server_default="received"),
    # Resolved while processing; NULL until the event is tied to a tenant.
    _tenant_fk(nullable=True),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    # Operator replays so far: replay n runs as workflow `stripe-event:{event_id}:replay:{n}`.
    Column("replay_count", Integer, nullable=False, server_default=text("0")),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("dispatched_at", DateTime(timezone=True), nullable=True),
    Column("processed_at", DateTime(timezone=True), nullable=True),
    _updated_at(),
    Index("ix_webhook_events_status_received_at", "status", "received_at"),
)

grace_periods = Table(
    "grace_periods",
    metadata,
    _uuid_pk(),
    _tenant_fk(),
    # payment | soft_cap
    Column("kind", Text, nullable=False),
    # What the grace is about: an invoice id (payment) or a metric (soft cap).
    Column("subject", Text, nullable=False),
    Column("workflow_id", Text, nullable=False, unique=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    # paid | upgraded | ended | expired | extended
    Column("resolution", Text, nullable=True),
    Column("actor", Text, nullable=True),
    _created_at(),
    _updated_at(),
)

dunning_attempts = Table(
    "dunning_attempts",
    metadata,
    _uuid_pk(),
    _tenant_fk(),
    Column(
        "invoice_id",
        UUID(as_uuid=True),
        ForeignKey("invoices.id"),
        nullable=False,
    ),
    Column("attempt", Integer, nullable=False),
    Column("idempotency_key", Text, nullable=False, unique=True),
    Column("attempted_at", DateTime(timezone=True), nullable=False),
    # succeeded | declined | already_paid | requires_action | error
    Column("outcome", Text, nullable=False),
    Column("decline_code", Text, nullable=True),
    Column("failure_message", Text, nullable=True),
    _created_at(),
    UniqueConstraint("invoice_id", "attempt"),
)

notification_endpoints = Table(
    "notification_endpoints",
    metadata,
    _uuid_pk(),
    _tenant_fk(),
    Column("url", Text, nullable=False),
    # Signing secret for the Standard Webhooks scheme (whsec_...), shown to the tenant once.
    Column("secret", Text, nullable=False),
    Column("event_types", ARRAY(Text), nullable=True),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    _created_at(),
    _updated_at(),
)

notification_deliveries = Table(
    "notification_deliveries",
    metadata,
    _uuid_pk(),
    _tenant_fk(),
    Column(
        "endpoint_id",
        UUID(as_uuid=True),
        ForeignKey("notification_endpoints.id"),
        nullable=False,
        index=True,
    ),
    # webhook-id header value: stable across retries so receivers can dedupe.
    Column("message_id", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    # pending | delivered | dead_lettered
    Column("status", Text, nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text, nullable=True),
    # When its delivery workflow was started; NULL rows are the re-dispatcher's to start.
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    _created_at(),
    _updated_at(),
    UniqueConstraint("endpoint_id", "message_id"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    # NULL for operator actions not about one tenant.
    _tenant_fk(nullable=True),
    # Who did it: "api_key:{id}", "operator:{key id}", "workflow:{workflow id}", "stripe:{event}"
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("subject_type", Text, nullable=False),
    Column("subject_id", Text, nullable=True),
    Column("details", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # The API request it came from (X-Request-Id); NULL outside a request.
    Column("request_id", Text, nullable=True),
    _created_at(),
    Index("ix_audit_log_created_at", "created_at"),
)

# The last invoice number of each (seller, series): gapless, allocated in the finalising
# transaction (adapters/db/invoices.py `assign_number`).
invoice_number_series = Table(
    "invoice_number_series",
    metadata,
    Column("seller", Text, primary_key=True),
    Column("series", Text, primary_key=True),
    Column("last_value", BigInteger, nullable=False),
    CheckConstraint("last_value > 0", name="last_value"),
)

# Requests granted per subject (`tenant:{id}`, `ip:{addr}`), route class and fixed window, summed
# over every API process (adapters/db/rate_limits.py). Bookkeeping, not tenant data.
rate_limit_windows = Table(
    "rate_limit_windows",
    metadata,
    Column("subject", Text, primary_key=True),
    Column("route_class", Text, primary_key=True),
    Column("window_start", DateTime(timezone=True), primary_key=True, index=True),
    Column("granted", Integer, nullable=False),
    # What the last lease added (the statement that leases returns it).
    Column("last_lease", Integer, nullable=False),
    CheckConstraint("granted >= 0", name="granted"),
)

# Per-tenant overrides of the rate limits in settings, per route class.
tenant_rate_limits = Table(
    "tenant_rate_limits",
    metadata,
    Column(
        "tenant_id",
        UUID(as_uuid=True),
        ForeignKey("tenants.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("route_class", Text, primary_key=True),
    Column("per_window", Integer, nullable=False),
    Column("actor", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("per_window >= 0", name="per_window"),
    CheckConstraint("route_class IN ('ingest', 'check', 'command', 'read')", name="route_class"),
)

credit_notes = Table(
    "credit_notes",
    metadata,
    _uuid_pk(),
    _tenant_fk(),
    Column(
        "invoice_id",
        UUID(as_uuid=True),
        ForeignKey("invoices.id", ondelete="RESTRICT"),
        nullable=False,
        index=True,
    ),
    # `CN-{year}-NNNNNN`, from the same gapless series table as invoices (ADR 0020).
    Column("number", Text, nullable=False, unique=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", Text, nullable=False),
    Column("reason", Text, nullable=False),
    # operator (through the API) | stripe (a refund made in the Stripe dashboard)
    Column("source", Text, nullable=False),
    # refund (to the card) | credit_balance (the subscription's, used by the next invoices) |
    # reduce_amount_due (an open invoice's, through a Stripe credit note)
    Column("method", Text, nullable=False, server_default=text("'refund'")),
    Column("idempotency_key", Text, nullable=False),
    # pending | succeeded | failed
    Column("refund_status", Text, nullable=False),
    Column("stripe_refund_id", Text, nullable=True, unique=True),
    Column("refunded_at", DateTime(timezone=True), nullable=True),
    # The Stripe credit note that lowered an open invoice's amount due.
    Column("stripe_credit_note_id", Text, nullable=True, unique=True),
    Column("actor", Text, nullable=False),
    _created_at(),
    _updated_at(),
    UniqueConstraint("tenant_id", "idempotency_key"),
    CheckConstraint("amount > 0", name="amount"),
    CheckConstraint("source IN ('operator', 'stripe')", name="source"),
    CheckConstraint("method IN ('refund', 'credit_balance', 'reduce_amount_due')", name="method"),
    CheckConstraint("refund_status IN ('pending', 'succeeded', 'failed')", name="refund_status"),
)


def _redeemable() -> list[Column[object]]:
    return [
        Column("expires_at", DateTime(timezone=True), nullable=True),
        Column("max_redemptions", Integer, nullable=True),
        Column("redemptions", Integer, nullable=False, server_default=text("0")),
        Column("actor", Text, nullable=False),
        _created_at(),
    ]


# The coupon catalog (ADR 0023): not tenant data.
coupons = Table(
    "coupons",
    metadata,
    _uuid_pk(),
    Column("code", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("percent_off", Integer, nullable=True),
    Column("amount_off", BigInteger, nullable=True),
    Column("currency", Text, nullable=True),
    # base | overage | both
    Column("applies_to", Text, nullable=False),
    # once | repeating | forever
    Column("duration", Text, nullable=False),
    Column("duration_periods", Integer, nullable=True),
    *_redeemable(),
    CheckConstraint("(percent_off IS NULL) <> (amount_off IS NULL)", name="one_kind"),
    CheckConstraint("percent_off IS NULL OR percent_off BETWEEN 1 AND 100", name="percent"),
    CheckConstraint(
        "amount_off IS NULL OR (amount_off > 0 AND currency IS NOT NULL)", name="amount"
    ),
    CheckConstraint("applies_to IN ('base', 'overage', 'both')", name="applies_to"),
    CheckConstraint(
        "duration IN ('once', 'repeating', 'forever') AND (duration = 'repeating') = "
        "(duration_periods IS NOT NULL) AND (duration_periods IS NULL OR duration_periods > 0)",
        name="duration",
    ),
    CheckConstraint(
        "max_redemptions IS NULL OR (max_redemptions > 0 AND redemptions <= max_redemptions)",
        name="redemptions",
    ),
)

promotion_codes = Table(
    "promotion_codes",
    metadata,
    _uuid_pk(),
    Column("code", Text, nullable=False, unique=True),
    Column(
        "coupon_id",
        UUID(as_uuid=True),
        ForeignKey("coupons.id", ondelete="RESTRICT"),
        nullable=False,
    ),  # fmt: skip
    Column("active", Boolean, nullable=False, server_default=text("true")),
    *_redeemable(),
    CheckConstraint(
        "max_redemptions IS NULL OR (max_redemptions > 0 AND redemptions <= max_redemptions)",
        name="redemptions",
    ),
)

# Tables whose rows belong to one tenant: each gets the RLS policy in the migrations.
TENANT_TABLES: tuple[Table, ...] = (
    tenants,
    api_keys,
    entitlement_overrides,
    subscriptions,
    subscription_changes,
    usage_events,
    usage_daily_totals,
    usage_period_counters,
    invoices,
    invoice_items,
    payment_methods,
    webhook_events,
    grace_periods,
    dunning_attempts,
    notification_endpoints,
    notification_deliveries,
    audit_log,
    tenant_rate_limits,
    credit_notes,
)
