"""Every activity a workflow calls, by reference: its name, its input type and its result type,
in one place. Workflows call `await call(REF, arg, ...)` (or `call_local`), so an activity is
never named by a string at a call site, the argument is type-checked against the input type, and
the result comes back as the declared type. `tests/unit/test_activity_registry.py` checks each
reference against the implementation the worker registers (same name, same input and result
types) and that every registered activity is referenced.

Calls through a reference schedule exactly what the string form did (same activity type and
options), so recorded histories replay unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import workflows.dunning_io as dunning_io
    import workflows.grace_io as grace_io
    import workflows.io as io

A = TypeVar("A")
R = TypeVar("R")


@dataclass(frozen=True)
class ActivityRef(Generic[A, R]):
    name: str
    input: type[A]
    result: type[R]


async def call(ref: ActivityRef[A, R], arg: A, **options: Any) -> R:
    """`workflow.execute_activity` through a reference; `options` as that function takes them."""
    result: R = await workflow.execute_activity(ref.name, arg, result_type=ref.result, **options)
    return result


async def call_local(ref: ActivityRef[A, R], arg: A, **options: Any) -> R:
    """`workflow.execute_local_activity` through a reference."""
    result: R = await workflow.execute_local_activity(
        ref.name, arg, result_type=ref.result, **options
    )
    return result


# --- the main task queue (Postgres) ------------------------------------------------------------

RECORD_STRIPE_CUSTOMER = ActivityRef(
    "record_stripe_customer", io.RecordCustomerInput, io.RecordCustomerResult
)
PROJECT_SUBSCRIPTION = ActivityRef(
    "project_subscription", io.SubscriptionProjection, io.ProjectionResult
)
RECORD_INVOICE = ActivityRef("record_invoice", io.RecordInvoiceInput, io.RecordInvoiceResult)
PROJECT_INVOICE = ActivityRef("project_invoice", io.InvoiceProjection, io.ProjectionResult)
RECORD_SUBSCRIPTION_CHANGE = ActivityRef(
    "record_subscription_change", io.SubscriptionChange, io.RecordChangeResult
)
RECORD_PAYMENT_METHOD = ActivityRef(
    "record_payment_method", io.RecordPaymentMethodInput, io.RecordChangeResult
)
RESOLVE_STRIPE_EVENT = ActivityRef(
    "resolve_stripe_event", io.ResolveStripeEventInput, io.ResolvedStripeEvent
)
PROJECT_STRIPE_EVENT = ActivityRef(
    "project_stripe_event", io.ProjectStripeEventInput, io.ProjectStripeEventResult
)
MARK_STRIPE_EVENT = ActivityRef(
    "mark_stripe_event", io.MarkStripeEventInput, io.MarkStripeEventResult
)
SEND_NOTIFICATION = ActivityRef(
    "send_notification", io.SendNotificationInput, io.SendNotificationResult
)
DELIVER_NOTIFICATION = ActivityRef(
    "deliver_notification", io.DeliverNotificationInput, io.DeliverNotificationResult
)
MARK_NOTIFICATION = ActivityRef(
    "mark_notification", io.MarkNotificationInput, io.MarkNotificationResult
)
RECORD_GRACE_PERIOD = ActivityRef(
    "record_grace_period", grace_io.GraceProjection, grace_io.GraceProjected
)
APPLY_GRACE_EXPIRY = ActivityRef(
    "apply_grace_expiry", grace_io.GraceEffectInput, grace_io.GraceEffectResult
)
SETTLE_PAYMENT_GRACE = ActivityRef(
    "settle_payment_grace", grace_io.PaymentSettlement, grace_io.PaymentSettled
)
RECONCILE_USAGE_DAYS = ActivityRef(
    "reconcile_usage_days", grace_io.ReconcileInput, grace_io.ReconcileResult
)
COMPUTE_PERIOD_OVERAGE = ActivityRef(
    "compute_period_overage", grace_io.PeriodOverageInput, grace_io.PeriodOverageResult
)
FIND_MISSING_GRACE_WINDOWS = ActivityRef(
    "find_missing_grace_windows", grace_io.ReconcileInput, grace_io.MissingGraceWindows
)
RECORD_DUNNING_ATTEMPT = ActivityRef(
    "record_dunning_attempt", dunning_io.RecordAttemptInput, dunning_io.RecordAttemptResult
)
PROJECT_DUNNING_INVOICE = ActivityRef(
    "project_dunning_invoice", dunning_io.InvoiceProjection, dunning_io.InvoiceProjectionResult
)

# --- the Stripe task queue (rate-limited) ------------------------------------------------------

ENSURE_STRIPE_CUSTOMER = ActivityRef(
    "ensure_stripe_customer", io.EnsureCustomerInput, io.EnsureCustomerResult
)
CREATE_STRIPE_INVOICE = ActivityRef(
    "create_stripe_invoice", io.CreateStripeInvoiceInput, io.StripeInvoiceResult
)
COLLECT_INVOICE = ActivityRef("collect_invoice", io.CollectInvoiceInput, io.CollectInvoiceResult)
ATTACH_PAYMENT_METHOD = ActivityRef(
    "attach_payment_method", io.AttachPaymentMethodInput, io.PaymentMethodResult
)
REREAD_STRIPE_INVOICE = ActivityRef(
    "reread_stripe_invoice", io.RereadInvoiceInput, io.RereadInvoiceResult
)
REREAD_DUNNING_INVOICE = ActivityRef(
    "reread_dunning_invoice", dunning_io.RereadInvoiceInput, dunning_io.InvoiceSnapshot
)
RETRY_INVOICE_PAYMENT = ActivityRef(
    "retry_invoice_payment", dunning_io.RetryPaymentInput, dunning_io.RetryPaymentResult
)
CLOSE_UNRECOVERED_INVOICE = ActivityRef(
    "close_unrecovered_invoice", dunning_io.FinalActionInput, dunning_io.FinalActionResult
)

ALL: tuple[ActivityRef[Any, Any], ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, ActivityRef)
)
