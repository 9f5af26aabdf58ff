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
    import workflows.audit_retention_io as audit_retention_io
    import workflows.dunning_io as dunning_io
    import workflows.erasure_io as erasure_io
    import workflows.export_io as export_io
    import workflows.grace_io as grace_io
    import workflows.notification_io as notification_io
    import workflows.reconcile_io as reconcile_io
    import workflows.reconcile_stripe_io as reconcile_stripe_io
    import workflows.refund_io as refund_io
    import workflows.shared_io as shared_io
    import workflows.stripe_event_io as stripe_event_io
    import workflows.subscription_io as subscription_io

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
    "record_stripe_customer",
    subscription_io.RecordCustomerInput,
    subscription_io.RecordCustomerResult,
)
PROJECT_SUBSCRIPTION = ActivityRef(
    "project_subscription", subscription_io.SubscriptionProjection, shared_io.ProjectionResult
)
RECORD_INVOICE = ActivityRef(
    "record_invoice", subscription_io.RecordInvoiceInput, subscription_io.RecordInvoiceResult
)
PROJECT_INVOICE = ActivityRef(
    "project_invoice", shared_io.InvoiceProjection, shared_io.ProjectionResult
)
RECORD_SUBSCRIPTION_CHANGE = ActivityRef(
    "record_subscription_change",
    subscription_io.SubscriptionChange,
    subscription_io.RecordChangeResult,
)
RECORD_PAYMENT_METHOD = ActivityRef(
    "record_payment_method",
    subscription_io.RecordPaymentMethodInput,
    subscription_io.RecordChangeResult,
)
RESOLVE_STRIPE_EVENT = ActivityRef(
    "resolve_stripe_event",
    stripe_event_io.ResolveStripeEventInput,
    stripe_event_io.ResolvedStripeEvent,
)
PROJECT_STRIPE_EVENT = ActivityRef(
    "project_stripe_event",
    stripe_event_io.ProjectStripeEventInput,
    stripe_event_io.ProjectStripeEventResult,
)
MARK_STRIPE_EVENT = ActivityRef(
    "mark_stripe_event", stripe_event_io.MarkStripeEventInput, stripe_event_io.MarkStripeEventResult
)
SEND_NOTIFICATION = ActivityRef(
    "send_notification",
    notification_io.SendNotificationInput,
    notification_io.SendNotificationResult,
)
DELIVER_NOTIFICATION = ActivityRef(
    "deliver_notification",
    notification_io.DeliverNotificationInput,
    notification_io.DeliverNotificationResult,
)
MARK_NOTIFICATION = ActivityRef(
    "mark_notification",
    notification_io.MarkNotificationInput,
    notification_io.MarkNotificationResult,
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
    "reconcile_usage_days", reconcile_io.ReconcileInput, reconcile_io.ReconcileResult
)
COMPUTE_PERIOD_OVERAGE = ActivityRef(
    "compute_period_overage",
    subscription_io.PeriodOverageInput,
    subscription_io.PeriodOverageResult,
)
FIND_MISSING_GRACE_WINDOWS = ActivityRef(
    "find_missing_grace_windows", reconcile_io.ReconcileInput, reconcile_io.MissingGraceWindows
)
FIND_STALE_INVOICES = ActivityRef(
    "find_stale_invoices", reconcile_stripe_io.SweepInput, reconcile_stripe_io.StaleInvoices
)
REPORT_STRIPE_DRIFT = ActivityRef(
    "report_stripe_drift", reconcile_stripe_io.DriftReport, reconcile_stripe_io.DriftReport
)
ERASURE_SUBJECTS = ActivityRef(
    "erasure_subjects", erasure_io.TenantRef, erasure_io.ErasureSubjectsOut
)
CANCEL_FOR_ERASURE = ActivityRef(
    "cancel_for_erasure", erasure_io.CancelForErasure, erasure_io.ErasureStep
)
REVOKE_TENANT_ACCESS = ActivityRef(
    "revoke_tenant_access", erasure_io.TenantRef, erasure_io.ErasureStep
)
TOMBSTONE_TENANT = ActivityRef(
    "tombstone_tenant", erasure_io.TombstoneInput, erasure_io.ErasureStep
)
PURGE_AUDIT_LOG = ActivityRef(
    "purge_audit_log", audit_retention_io.PurgeInput, audit_retention_io.PurgeResult
)
REFUND_CREDIT_NOTE = ActivityRef(
    "refund_credit_note", refund_io.RefundRequest, refund_io.RefundMade
)
RECORD_CREDIT_NOTE_REFUND = ActivityRef(
    "record_credit_note_refund", refund_io.RecordRefundInput, bool
)
CREDIT_OPEN_INVOICE = ActivityRef(
    "credit_open_invoice", refund_io.OpenInvoiceCreditRequest, refund_io.OpenInvoiceCredited
)
FIND_PAYMENT_INVOICE = ActivityRef(
    "find_payment_invoice", stripe_event_io.FindPaymentInvoiceInput, stripe_event_io.PaymentInvoice
)
APPLY_DISPUTE = ActivityRef(
    "apply_dispute", stripe_event_io.ApplyDisputeInput, stripe_event_io.DisputeApplied
)
PURGE_ERASED_BOOKS = ActivityRef(
    "purge_erased_books", audit_retention_io.PurgeInput, audit_retention_io.BooksPurgeResult
)
EXPORT_TABLE = ActivityRef("export_table", export_io.ExportTableInput, export_io.ExportedTable)
FINISH_EXPORT = ActivityRef("finish_export", export_io.FinishExportInput, export_io.ExportFile)
EXPIRE_EXPORT = ActivityRef(
    "expire_export", export_io.ExpireExportInput, export_io.ExpireExportInput
)
RECORD_DUNNING_ATTEMPT = ActivityRef(
    "record_dunning_attempt", dunning_io.RecordAttemptInput, dunning_io.RecordAttemptResult
)
PROJECT_DUNNING_INVOICE = ActivityRef(
    "project_dunning_invoice", shared_io.InvoiceProjection, shared_io.ProjectionResult
)

# --- the Stripe task queue (rate-limited) ------------------------------------------------------

ENSURE_STRIPE_CUSTOMER = ActivityRef(
    "ensure_stripe_customer",
    subscription_io.EnsureCustomerInput,
    subscription_io.EnsureCustomerResult,
)
CREATE_STRIPE_INVOICE = ActivityRef(
    "create_stripe_invoice", subscription_io.CreateStripeInvoiceInput, shared_io.StripeInvoiceRead
)
COLLECT_INVOICE = ActivityRef(
    "collect_invoice", subscription_io.CollectInvoiceInput, subscription_io.CollectInvoiceResult
)
ATTACH_PAYMENT_METHOD = ActivityRef(
    "attach_payment_method",
    subscription_io.AttachPaymentMethodInput,
    subscription_io.PaymentMethodResult,
)
REREAD_STRIPE_INVOICE = ActivityRef(
    "reread_stripe_invoice", shared_io.RereadInvoiceInput, shared_io.StripeInvoiceRead
)
ERASE_STRIPE_CUSTOMER = ActivityRef(
    "erase_stripe_customer", erasure_io.EraseStripeInput, erasure_io.ErasureStep
)
REREAD_DUNNING_INVOICE = ActivityRef(
    "reread_dunning_invoice", shared_io.RereadInvoiceInput, shared_io.StripeInvoiceRead
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
