"""HTTP schemas (pydantic), separate from the Temporal payloads in workflows/*_io.py."""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from adapters.api_keys import Scope


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    email: EmailStr | None = None
    # Why (an operator's note, as Kill Bill records one): kept in the audit row.
    reason: str | None = Field(default=None, max_length=500)


class TenantOut(BaseModel):
    id: UUID
    name: str
    email: str | None
    access_status: str
    stripe_customer_id: str | None
    created_at: datetime


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Literal[Scope.READ, Scope.MANAGE]] = Field(min_length=1)
    # Why (an operator's note, as Kill Bill records one): kept in the audit row.
    reason: str | None = Field(default=None, max_length=500)


class ApiKeyOut(BaseModel):
    id: UUID
    tenant_id: UUID | None
    name: str
    prefix: str
    scopes: list[str]
    revoked_at: datetime | None
    created_at: datetime


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The API key. Shown once: only its hash is stored.")


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan_code: str = Field(min_length=1, max_length=50)
    interval: Literal["month", "year"] = "month"
    payment_method_id: str | None = Field(default=None, max_length=255)
    promotion_code: str | None = Field(
        default=None, min_length=1, max_length=100,
        description="A promotion code: its coupon discounts the first billed periods (409 "
        "`coupon_refused` when it is unknown, expired or used up).",
    )  # fmt: skip


class SubscriptionOut(BaseModel):
    id: UUID
    tenant_id: UUID
    plan_code: str
    plan_version: int
    interval: str
    currency: str
    status: str
    workflow_id: str
    current_period_start: datetime | None
    current_period_end: datetime | None
    trial_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    created_at: datetime
    updated_at: datetime


class ComponentHealth(BaseModel):
    status: Literal["ok", "down"]
    detail: str | None = None


class Readiness(BaseModel):
    status: Literal["ok", "down"]
    components: dict[str, ComponentHealth]


class PlanChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan_code: str = Field(min_length=1, max_length=50)
    timing: Literal["default", "immediate", "period_end"] = Field(
        default="default",
        description="default: upgrades now (prorated invoice), downgrades at period end",
    )
    proration_date: datetime | None = Field(
        default=None,
        description="Price the change at this instant (from a preview), like Stripe's "
        "proration_date: the change then bills exactly the previewed amounts",
    )


class PreviewQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan_code: str = Field(min_length=1, max_length=50)
    timing: Literal["default", "immediate", "period_end"] = "default"
    proration_date: datetime | None = None


class LineOut(BaseModel):
    kind: str
    description: str
    amount: int
    metric: str | None = None
    quantity: int | None = None
    period_start: datetime | None = None
    period_end: datetime | None = None


class PreviewOut(BaseModel):
    kind: str
    currency: str
    effective_at: datetime
    proration_date: datetime
    lines: list[LineOut]
    total: int
    credit_balance_after: int
    next_invoice_at: datetime | None
    next_invoice_lines: list[LineOut]
    next_invoice_total: int


class PlanChangeOut(BaseModel):
    subscription_id: UUID
    kind: str
    effective_at: datetime
    scheduled: bool
    lines: list[LineOut]
    invoice_id: UUID | None
    invoice_total: int
    credit_balance: int
    status: str


class PauseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resume_at: datetime | None = None


class LifecycleOut(BaseModel):
    subscription_id: UUID
    status: str
    cancel_at_period_end: bool
    effective_at: datetime | None
    invoice_id: UUID | None = None
    invoice_total: int = 0


class ChangeOut(BaseModel):
    kind: str
    from_status: str | None
    to_status: str | None
    from_plan_code: str | None
    to_plan_code: str | None
    effective_at: datetime
    actor: str
    details: dict[str, object]
    created_at: datetime


class InvoiceItemOut(BaseModel):
    position: int
    kind: str
    description: str
    metric: str | None
    amount: int
    currency: str
    period_start: datetime | None
    period_end: datetime | None


class InvoiceOut(BaseModel):
    id: UUID
    # INV-2026-000123, given when the invoice is finalised; null for a draft.
    number: str | None = None
    subscription_id: UUID | None
    status: str
    # null (never disputed), open, won or lost: a card holder's dispute of the payment.
    dispute_status: str | None = None
    billing_reason: str
    currency: str
    subtotal: int
    total: int
    amount_paid: int
    amount_due: int
    period_start: datetime | None
    period_end: datetime | None
    hosted_invoice_url: str | None
    attempt_count: int
    paid_at: datetime | None
    created_at: datetime


class InvoiceDetailOut(InvoiceOut):
    items: list[InvoiceItemOut]
    # Every credit note issued against the invoice (ADR 0020), newest first.
    credit_notes: list[CreditNoteOut] = []


class InvoicePage(BaseModel):
    data: list[InvoiceOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null: end")


class PaymentMethodIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payment_method_id: str = Field(min_length=1, max_length=255, pattern=r"^pm_[A-Za-z0-9_]+$")


class PaymentMethodOut(BaseModel):
    stripe_payment_method_id: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    is_default: bool
    created_at: datetime | None = None


class AccountOut(BaseModel):
    """The calling tenant's own account: whether it has access, and why not."""

    tenant_id: UUID
    name: str
    email: str | None
    # active | suspended | closed
    access_status: str
    # payment (an unpaid invoice's grace window expired) | operator (an operator ended that
    # window early) | null while active
    suspension_reason: str | None
    stripe_customer_id: str | None
    default_payment_method: PaymentMethodOut | None


class WebhookEventOut(BaseModel):
    stripe_event_id: str
    type: str
    status: str
    tenant_id: UUID | None
    attempts: int
    last_error: str | None
    replay_count: int
    received_at: datetime
    processed_at: datetime | None


class WebhookReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Event ids to replay; omit and set `all_dead_lettered` to replay every dead letter.
    event_ids: list[str] | None = Field(default=None, min_length=1, max_length=1000)
    all_dead_lettered: bool = False
    # Why (an operator's note, as Kill Bill records one): kept in the audit row.
    reason: str | None = Field(default=None, max_length=500)


class WebhookReplayOut(BaseModel):
    event_id: str
    replay: int
    workflow_id: str
    started: bool


class NotificationEndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://")
    # None: every event type.
    event_types: list[str] | None = None


class NotificationEndpointOut(BaseModel):
    id: UUID
    url: str
    event_types: list[str] | None
    enabled: bool
    created_at: datetime


class NotificationEndpointCreated(NotificationEndpointOut):
    # Shown once: the tenant verifies our signatures with it.
    secret: str


class CurrencyRevenueOut(BaseModel):
    """One currency's figures, integers in minor units (docs/revenue.md)."""

    mrr_start: int = Field(description="MRR at the month's first instant")
    mrr: int = Field(description="MRR at the month's end (annual plans: price / 12, half up)")
    arr: int = Field(description="mrr x 12")
    new_mrr: int
    expansion_mrr: int
    contraction_mrr: int
    churned_mrr: int
    invoiced: int = Field(description="totals of invoices issued in the month")
    collected: int = Field(description="amounts paid in the month")
    outstanding: int = Field(description="owed at the month's end")
    recognized_revenue: int = Field(description="annual plans: recognised in the month")
    deferred_revenue: int = Field(description="annual plans: invoiced, not yet recognised")


class RevenueReportOut(BaseModel):
    month: str
    currencies: dict[str, CurrencyRevenueOut]
    active_subscriptions: dict[str, int] = Field(
        description="subscriptions counted in MRR at the month's end, by plan code"
    )


class RateLimitOverride(BaseModel):
    model_config = ConfigDict(extra="forbid")
    route_class: Literal["ingest", "check", "command", "read"]
    # Requests per window; 0 refuses the class entirely; null returns it to the default.
    per_window: int | None = Field(ge=0, le=100_000_000)
    reason: str | None = Field(default=None, max_length=500)


class RateLimitsOut(BaseModel):
    window_seconds: int
    # The limit in force per route class (the tenant's override, else the default).
    limits: dict[str, int]
    overridden: list[str]


class ExportTableOut(BaseModel):
    table: str
    rows: int
    sha256: str


class ExportOut(BaseModel):
    export_id: str
    status: Literal["running", "ready", "expired"]
    tables_total: int
    tables_done: int
    rows: int
    current_table: str | None
    expires_at: str | None
    sha256: str | None = Field(description="of the zip, once ready")
    tables: list[ExportTableOut]

    @classmethod
    def of(cls, progress: object) -> ExportOut:
        return cls.model_validate(progress, from_attributes=True)


class AuditEntryOut(BaseModel):
    id: int
    created_at: datetime
    tenant_id: UUID | None
    # api_key:{id} (a tenant's or an operator's key), stripe:{event}, system:{workflow id}, ...
    actor: str
    action: str
    subject_type: str
    subject_id: str | None
    request_id: str | None
    # What changed: before/after where the action records them, and the reason if one was given.
    details: dict[str, object]


class AuditPage(BaseModel):
    data: list[AuditEntryOut]
    next_after: int | None = Field(description="Pass as `after` for the next page; null: end")


class ErasureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(default=None, max_length=500)


class ErasureStepOut(BaseModel):
    step: str
    detail: str


class ErasureOut(BaseModel):
    workflow_id: str
    # False: this tenant's erasure had been requested before (a second erase is a no-op).
    started_now: bool
    status: str
    steps: list[ErasureStepOut]


class BillingDetails(BaseModel):
    """The buyer block of the tenant's invoice PDFs; a missing field falls back to the
    tenant's name and email."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, max_length=200)
    address: list[str] | None = Field(default=None, max_length=6)
    tax_id: str | None = Field(default=None, max_length=64)
    email: EmailStr | None = None


class InvoiceResent(BaseModel):
    message_id: str
    # Endpoints it is queued for (0: the tenant has no endpoint taking `invoice.sent`).
    deliveries: int


class CreditNoteCreate(BaseModel):
    """Credit part or all of an invoice: a paid one is refunded to the card it was paid with
    (or credited to the balance); an open one asks for less."""

    model_config = ConfigDict(extra="forbid")
    amount: int = Field(gt=0, strict=True, description="Minor units (cents), at most what is "
                        "left to credit: on a paid invoice what was paid minus the credit notes "
                        "already issued, on an open one what is still due.")  # fmt: skip
    reason: str = Field(min_length=1, max_length=500)
    idempotency_key: str = Field(
        min_length=1, max_length=200, description="The same key again returns the same credit "
        "note and never refunds twice.",
    )  # fmt: skip
    method: Literal["refund", "credit_balance", "reduce_amount_due"] | None = Field(
        None, description="`refund`: to the card the invoice was paid with; "
        "`credit_balance`: to the subscription's credit balance, which the next invoices use "
        "before the card (both for a paid invoice); `reduce_amount_due`: an open (or "
        "uncollectible) invoice asks for less, through a Stripe credit note, and is settled "
        "when nothing is left due. Omitted: `reduce_amount_due` for an open invoice, "
        "`refund` otherwise.",
    )  # fmt: skip


class CreditNoteOut(BaseModel):
    id: UUID
    invoice_id: UUID
    # CN-2026-000001: a gapless series of its own.
    number: str
    amount: int
    currency: str
    reason: str
    # operator (through the API) | stripe (a refund made in the Stripe dashboard)
    source: str
    # refund (to the card) | credit_balance (the subscription's credit balance) |
    # reduce_amount_due (an open invoice's amount due)
    method: str
    # pending | succeeded (refunded, held by the balance, or taken off the amount due) | failed
    refund_status: str
    stripe_refund_id: str | None
    # The Stripe credit note that lowered an open invoice's amount due.
    stripe_credit_note_id: str | None = None
    refunded_at: datetime | None
    created_at: datetime


class CreditNoteList(BaseModel):
    data: list[CreditNoteOut]


class ChargeCreate(BaseModel):
    """A one-time charge on the tenant's subscription (ADR 0022)."""

    model_config = ConfigDict(extra="forbid")
    amount: int = Field(gt=0, strict=True, description="Minor units (cents), in the plan's "
                        "currency.")  # fmt: skip
    description: str = Field(min_length=1, max_length=200)
    invoice: Literal["now", "next"] = Field(
        "now", description="`now`: an invoice of its own, collected now and by dunning if the "
        "card fails; `next`: a line on the next invoice the subscription issues.",
    )  # fmt: skip
    idempotency_key: str = Field(min_length=1, max_length=200)
    reason: str | None = Field(default=None, max_length=500)


class ChargeOut(BaseModel):
    subscription_id: UUID
    key: str
    amount: int
    invoiced: str  # now | next_invoice
    # The charge's own invoice (`invoice: now`), once issued; null for `next`, or when the
    # same key was sent before (`added: false`: nothing was added again).
    invoice_id: UUID | None
    invoice_total: int
    status: str
    added: bool


class CouponCreate(BaseModel):
    """A coupon (ADR 0023): a percentage or a fixed amount off, for some billing periods."""

    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
    name: str = Field(min_length=1, max_length=200)
    percent_off: int | None = Field(default=None, ge=1, le=100, strict=True)
    amount_off: int | None = Field(default=None, gt=0, strict=True, description="Minor units.")
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    applies_to: Literal["base", "overage", "both"] = "both"
    duration: Literal["once", "repeating", "forever"] = "once"
    duration_periods: int | None = Field(
        default=None, ge=1, le=1200, strict=True,
        description="Billing periods a `repeating` coupon covers (not invoices).",
    )  # fmt: skip
    expires_at: datetime | None = None
    max_redemptions: int | None = Field(default=None, ge=1, strict=True)
    reason: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _one_kind(self) -> CouponCreate:
        if (self.percent_off is None) == (self.amount_off is None):
            raise ValueError("give percent_off or amount_off (with currency), not both")
        if self.amount_off is not None and self.currency is None:
            raise ValueError("amount_off needs a currency")
        if (self.duration == "repeating") != (self.duration_periods is not None):
            raise ValueError("duration_periods is for a repeating coupon, and it needs one")
        return self


class CouponOut(BaseModel):
    id: UUID
    code: str
    name: str
    percent_off: int | None
    amount_off: int | None
    currency: str | None
    applies_to: str
    duration: str
    duration_periods: int | None
    expires_at: datetime | None
    max_redemptions: int | None
    redemptions: int
    created_at: datetime


class CouponList(BaseModel):
    data: list[CouponOut]


class PromotionCodeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")
    max_redemptions: int | None = Field(default=None, ge=1, strict=True)
    expires_at: datetime | None = None
    reason: str | None = Field(default=None, max_length=500)


class PromotionCodeOut(BaseModel):
    id: UUID
    code: str
    coupon_code: str
    active: bool
    max_redemptions: int | None
    redemptions: int
    expires_at: datetime | None
    created_at: datetime


class DiscountApply(BaseModel):
    model_config = ConfigDict(extra="forbid")
    promotion_code: str = Field(min_length=1, max_length=100)
    reason: str | None = Field(default=None, max_length=500)
