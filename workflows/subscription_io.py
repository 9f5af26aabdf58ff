"""Temporal payloads of the subscription workflow (`subscription:{id}`), its updates, queries,
signals and activities.

Stored in workflow histories: add fields only with defaults, never rename or remove one while a
running workflow may still replay it. Timestamps are ISO 8601 strings in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from billing.dunning import DunningPolicy
from workflows.shared_io import StripeInvoiceRead


def _default_dunning_policy() -> dict[str, Any]:
    return DunningPolicy().to_dict()


@dataclass(frozen=True)
class PlanSnapshot:
    """A plan version as it was when the workflow started (billing.catalog.Plan.to_dict())."""

    plan_id: str
    code: str
    version: int
    definition: dict[str, Any]


@dataclass(frozen=True)
class DiscountPayload:
    """A coupon's discount (ADR 0023), as it crosses the boundary and continue-as-new."""

    code: str
    percent_off: int | None
    amount_off: int | None
    applies_to: str
    periods: int | None
    used: int = 0
    covered_start: str | None = None
    amount_left: int = 0


@dataclass(frozen=True)
class ApplyDiscountRequest:
    discount: DiscountPayload
    actor: str
    apply_before: str | None = None
    reason: str | None = None
    # The API request that sent the command (its X-Request-Id; set by `run_update`): the
    # audit row of the change it makes names it.
    request_id: str | None = None


@dataclass(frozen=True)
class SubscriptionInput:
    subscription_id: str
    tenant_id: str
    tenant_name: str
    tenant_email: str | None
    plan: PlanSnapshot
    interval: str
    stripe_task_queue: str
    actor: str
    # Demo clock: durations of the billing calendar are divided by this factor (1.0 = real time).
    time_scale: float = 1.0
    payment_method_id: str | None = None
    # Trial length snapshotted at start (None: the plan's trial_days).
    trial_days: int | None = None
    # At trial end without a payment method: "pause" (default) or "cancel".
    trial_end_policy: str = "pause"
    # Business instant the subscription starts at (None: now). Lets a subscription migrated from
    # the system being replaced keep its anchor day, and tests pin a calendar date.
    business_start: str | None = None
    # Set by continue-as-new: the state the previous run ended with.
    carry: SubscriptionCarry | None = None
    # billing.dunning.DunningPolicy.to_dict(), snapshotted at sign-up (the API fills it from
    # settings); every dunning child of this subscription chases with it.
    dunning_policy: dict[str, Any] = field(default_factory=_default_dunning_policy)
    # Access continues this long after a collection fails, then the tenant is suspended until
    # the invoice is paid (ADR 0006). Snapshotted at sign-up from BILLING_PAYMENT_GRACE_DAYS.
    payment_grace_days: float = 7.0
    # The tenant's Stripe customer when it exists before the subscription (ADR 0007).
    stripe_customer_id: str | None = None
    # A coupon redeemed at sign-up (ADR 0023): it covers the first billed periods.
    discount: DiscountPayload | None = None


@dataclass(frozen=True)
class SubscriptionResult:
    subscription_id: str
    status: str


@dataclass(frozen=True)
class EnsureCustomerInput:
    tenant_id: str
    name: str
    email: str | None
    # The customer the tenant already has (a card added before subscribing made it): reused,
    # never a second customer for one tenant.
    existing_customer_id: str | None = None


@dataclass(frozen=True)
class EnsureCustomerResult:
    customer_id: str


@dataclass(frozen=True)
class RecordCustomerInput:
    tenant_id: str
    customer_id: str


@dataclass(frozen=True)
class RecordCustomerResult:
    recorded: bool


@dataclass(frozen=True)
class SubscriptionProjection:
    """The subscription row as the workflow sees it; `version` only ever grows."""

    subscription_id: str
    tenant_id: str
    version: int
    status: str
    plan_id: str
    plan_code: str
    interval: str
    current_period_start: str | None = None
    current_period_end: str | None = None
    trial_end: str | None = None
    cancel_at_period_end: bool = False
    canceled_at: str | None = None
    paused_at: str | None = None
    resume_at: str | None = None
    pending_change: dict[str, Any] | None = None
    # The business clock (billing.periods.BusinessClock); None from older histories.
    clock_wall_origin: str | None = None
    clock_business_origin: str | None = None
    time_scale: float = 1.0


@dataclass(frozen=True)
class SubscriptionState:
    """Answer of the `state` query."""

    subscription_id: str
    tenant_id: str
    status: str
    plan_code: str
    interval: str
    stripe_customer_id: str | None
    current_period_start: str | None
    current_period_end: str | None
    trial_end: str | None
    version: int
    details: dict[str, Any] = field(default_factory=dict)
    cancel_at_period_end: bool = False
    pending_plan_code: str | None = None
    credit_balance: int = 0
    open_invoices: list[OpenInvoice] = field(default_factory=list)
    invoices_issued: int = 0
    # Open invoices a `dunning:{invoice_id}` child is chasing.
    dunning_invoice_ids: list[str] = field(default_factory=list)
    # When the subscription is canceled for non-payment unless paid first (business time).
    cancel_due_at: str | None = None
    paused_at: str | None = None
    resume_at: str | None = None
    has_payment_method: bool = False
    # The billing clock's current instant (differs from the wall clock under a demo time scale).
    business_now: str | None = None


@dataclass(frozen=True)
class StripeEventSignal:
    """A verified Stripe event, routed to the subscription workflow it concerns (signal
    `stripe_event`). The receiver remembers `event_id`s it has applied, so a replayed or
    duplicated event changes nothing. Object fields were re-read from Stripe where order
    matters (e.g. the invoice's current status), so a late event cannot move state backwards:
    by the `stripe_event` workflow before it signals, or (`reread`) by the receiver."""

    event_id: str
    event_type: str
    stripe_object_id: str | None = None
    # Engine invoice id (from the metadata the engine wrote on the Stripe invoice).
    invoice_id: str | None = None
    stripe_invoice_id: str | None = None
    # The invoice's status as re-read from Stripe when the event was processed (the event's
    # own snapshot when `reread`).
    invoice_status: str | None = None
    amount_paid: int | None = None
    hosted_invoice_url: str | None = None
    stripe_payment_method_id: str | None = None
    failure_message: str | None = None
    # Sent straight from acceptance with the event's own snapshot (ADR 0024): the receiver
    # re-reads the invoice from Stripe before acting on a snapshot that may be stale.
    reread: bool = False


@dataclass(frozen=True)
class InvoiceLinePayload:
    kind: str
    description: str
    amount: int
    metric: str | None = None
    quantity: int | None = None
    period_start: str | None = None
    period_end: str | None = None


@dataclass(frozen=True)
class OpenInvoice:
    """An invoice the workflow has issued and not yet seen paid."""

    invoice_id: str
    stripe_invoice_id: str | None
    total: int
    attempts: int = 0


@dataclass(frozen=True)
class PendingChargePayload:
    key: str
    description: str
    amount: int


@dataclass(frozen=True)
class AddChargeRequest:
    """A one-off charge (ADR 0022): invoiced now, or added to the next invoice."""

    key: str
    description: str
    amount: int
    invoice_now: bool
    actor: str
    reason: str | None = None
    # Wall-clock instant after which the command must not apply (the API's update timeout): an
    # update admitted while no worker ran is rejected by the validator if accepted too late.
    apply_before: str | None = None
    # The API request that sent the command (its X-Request-Id; set by `run_update`): the
    # audit row of the change it makes names it.
    request_id: str | None = None


@dataclass(frozen=True)
class AddCreditRequest:
    """A credit note's amount for the credit balance (ADR 0020)."""

    key: str
    amount: int
    actor: str
    reason: str | None = None
    apply_before: str | None = None
    # The API request that sent the command (its X-Request-Id; set by `run_update`): the
    # audit row of the change it makes names it.
    request_id: str | None = None


@dataclass(frozen=True)
class CreditResult:
    subscription_id: str
    key: str
    amount: int
    credit_balance: int
    added: bool


@dataclass(frozen=True)
class ChargeResult:
    subscription_id: str
    key: str
    amount: int
    invoiced: str  # now | next_invoice
    invoice_id: str | None
    invoice_total: int
    status: str
    # False when the key was added before (the same request again): nothing was added.
    added: bool = True


@dataclass(frozen=True)
class SubscriptionCarry:
    """Everything a run hands to the next one at continue-as-new."""

    status: str
    plan: PlanSnapshot
    customer_id: str | None
    # The billing clock: periods are `period_bounds(anchor, interval, period_index)`.
    anchor: str | None
    period_index: int
    trial_end: str | None
    cancel_at_period_end: bool
    canceled_at: str | None
    paused_at: str | None
    resume_at: str | None
    pending_plan: PlanSnapshot | None
    credit_balance: int
    version: int
    invoice_version: int
    change_seq: int
    has_payment_method: bool
    # Demo clock origin: business time = business_origin + (now - wall_origin) * time_scale.
    wall_origin: str
    business_origin: str
    seen_event_ids: list[str] = field(default_factory=list)
    open_invoices: list[OpenInvoice] = field(default_factory=list)
    invoices_issued: int = 0
    # One-off charges waiting for the next invoice, and every charge key seen (ADR 0022).
    pending_charges: list[PendingChargePayload] = field(default_factory=list)
    charge_keys: list[str] = field(default_factory=list)
    credit_keys: list[str] = field(default_factory=list)
    discount: DiscountPayload | None = None
    # Open invoices a `dunning:{invoice_id}` child is chasing. The child is their only writer
    # while it runs; any run of this workflow re-attaches to it by id.
    dunning_invoice_ids: list[str] = field(default_factory=list)
    # Business instant at which the subscription is canceled for non-payment (dunning exhausted,
    # plus the policy's cancel_after_days); cleared when what is owed gets paid first.
    cancel_due_at: str | None = None
    # Business instant of the "trial ending" notice (3 days before trial end); None once sent.
    trial_ending_notice_at: str | None = None
    # The card on file and when to warn that it expires (30 days before); None once sent.
    card: PaymentMethodResult | None = None
    card_expiring_notice_at: str | None = None


@dataclass(frozen=True)
class ChangePlanRequest:
    plan: PlanSnapshot
    actor: str
    # "default": upgrades now, downgrades at period end; "immediate"; "period_end".
    timing: str = "default"
    # The instant prices are prorated at (from a preview), like Stripe's proration_date, so a
    # preview followed by the change bills exactly the previewed amounts. None: now.
    proration_date: str | None = None
    # Wall-clock instant after which the command must not apply (the API's update timeout): an
    # update admitted while no worker ran is rejected by the validator if accepted too late.
    apply_before: str | None = None
    # The API request that sent the command (its X-Request-Id; set by `run_update`): the
    # audit row of the change it makes names it.
    request_id: str | None = None


@dataclass(frozen=True)
class ChangePlanResult:
    subscription_id: str
    kind: str  # upgrade | downgrade | lateral
    effective_at: str
    scheduled: bool
    lines: list[InvoiceLinePayload]
    invoice_id: str | None
    invoice_total: int
    credit_balance: int
    status: str


@dataclass(frozen=True)
class PreviewRequest:
    plan: PlanSnapshot | None = None
    timing: str = "default"
    proration_date: str | None = None
    # The caller's wall-clock instant: a query only knows the time of the last workflow task.
    as_of: str | None = None


@dataclass(frozen=True)
class PreviewResult:
    """The change's invoice now (if any) and the next renewal invoice, same code as billing."""

    kind: str
    effective_at: str
    proration_date: str
    lines: list[InvoiceLinePayload]
    total: int
    credit_balance_after: int
    next_invoice_at: str | None
    next_invoice_lines: list[InvoiceLinePayload]
    next_invoice_total: int
    currency: str


@dataclass(frozen=True)
class CancelRequest:
    actor: str
    at_period_end: bool = True
    # Wall-clock instant after which the command must not apply (the API's update timeout): an
    # update admitted while no worker ran is rejected by the validator if accepted too late.
    apply_before: str | None = None
    # The API request that sent the command (its X-Request-Id; set by `run_update`): the
    # audit row of the change it makes names it.
    request_id: str | None = None


@dataclass(frozen=True)
class PauseRequest:
    actor: str
    resume_at: str | None = None
    # Wall-clock instant after which the command must not apply (the API's update timeout): an
    # update admitted while no worker ran is rejected by the validator if accepted too late.
    apply_before: str | None = None
    # The API request that sent the command (its X-Request-Id; set by `run_update`): the
    # audit row of the change it makes names it.
    request_id: str | None = None


@dataclass(frozen=True)
class LifecycleRequest:
    """Undo a pending cancel, or resume."""

    actor: str
    # Wall-clock instant after which the command must not apply (the API's update timeout): an
    # update admitted while no worker ran is rejected by the validator if accepted too late.
    apply_before: str | None = None
    # The API request that sent the command (its X-Request-Id; set by `run_update`): the
    # audit row of the change it makes names it.
    request_id: str | None = None


@dataclass(frozen=True)
class LifecycleResult:
    subscription_id: str
    status: str
    cancel_at_period_end: bool
    effective_at: str | None
    invoice_id: str | None = None
    invoice_total: int = 0


@dataclass(frozen=True)
class SetPaymentMethodRequest:
    payment_method_id: str
    actor: str
    # Wall-clock instant after which the command must not apply (the API's update timeout): an
    # update admitted while no worker ran is rejected by the validator if accepted too late.
    apply_before: str | None = None
    # The API request that sent the command (its X-Request-Id; set by `run_update`): the
    # audit row of the change it makes names it.
    request_id: str | None = None


@dataclass(frozen=True)
class PaymentMethodResult:
    payment_method_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class AttachPaymentMethodInput:
    tenant_id: str
    customer_id: str
    payment_method_id: str


@dataclass(frozen=True)
class RecordInvoiceInput:
    invoice_id: str
    tenant_id: str
    subscription_id: str
    billing_key: str
    billing_reason: str
    currency: str
    subtotal: int
    total: int
    lines: list[InvoiceLinePayload]
    period_start: str | None
    period_end: str | None
    version: int
    # The API request whose command issued the invoice (ADR 0019); None for a renewal.
    request_id: str | None = None


@dataclass(frozen=True)
class RecordInvoiceResult:
    invoice_id: str
    created: bool


@dataclass(frozen=True)
class CreateStripeInvoiceInput:
    invoice_id: str
    customer_id: str
    currency: str
    lines: list[InvoiceLinePayload]
    tenant_id: str
    subscription_id: str


@dataclass(frozen=True)
class CollectInvoiceInput:
    invoice_id: str
    stripe_invoice_id: str
    attempt: int


@dataclass(frozen=True)
class CollectInvoiceResult:
    # paid | already_paid | declined | requires_action | no_payment_method
    outcome: str
    invoice: StripeInvoiceRead
    decline_code: str | None = None
    failure_message: str | None = None


@dataclass(frozen=True)
class SubscriptionChange:
    tenant_id: str
    subscription_id: str
    change_key: str
    kind: str
    effective_at: str
    actor: str
    from_status: str | None = None
    to_status: str | None = None
    from_plan_code: str | None = None
    to_plan_code: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # The API request that asked for the change (its X-Request-Id), for the audit row;
    # None for the workflow's own decisions.
    request_id: str | None = None


@dataclass(frozen=True)
class RecordChangeResult:
    recorded: bool


@dataclass(frozen=True)
class RecordPaymentMethodInput:
    tenant_id: str
    card: PaymentMethodResult


@dataclass(frozen=True)
class PeriodOverageInput:
    """Read a closed period's aggregates and price its overage with the plan snapshot the
    subscription workflow holds (billing.catalog.Plan.to_dict())."""

    tenant_id: str
    period_start: str
    plan_definition: dict[str, Any]


@dataclass(frozen=True)
class OverageLineOut:
    metric: str
    used: int
    included: int
    units: int
    unit_size: int
    unit_price: int
    amount: int
    description: str


@dataclass(frozen=True)
class PeriodOverageResult:
    lines: list[OverageLineOut] = field(default_factory=list)
    total: int = 0
