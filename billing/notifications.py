"""The notification types the engine sends to a tenant's endpoints (docs/notifications.md lists
exactly these: a test compares them). Workflows send them through `workflows.notify`, the
API and activities queue them in their own transactions."""

from __future__ import annotations

SUBSCRIPTION_ACTIVATED = "subscription.activated"
SUBSCRIPTION_TRIAL_ENDING = "subscription.trial_ending"
SUBSCRIPTION_CANCELED = "subscription.canceled"
INVOICE_PAYMENT_FAILED = "invoice.payment_failed"
INVOICE_PAID = "invoice.paid"
# Sent again on request (`POST /api/billing/invoices/{id}/resend`), by the API.
INVOICE_SENT = "invoice.sent"
DUNNING_STEP = "dunning.step"
PAYMENT_METHOD_EXPIRING = "payment_method.expiring"
TENANT_SUSPENDED = "tenant.suspended"
# A payment disputed by the card holder, and the dispute closed (won or lost): ADR 0021.
INVOICE_DISPUTED = "invoice.disputed"
INVOICE_DISPUTE_CLOSED = "invoice.dispute_closed"
# Queued by usage ingestion (the API) in the transaction that records the crossing.
QUOTA_THRESHOLD = "quota.threshold"

EVENT_TYPES = (
    SUBSCRIPTION_ACTIVATED,
    SUBSCRIPTION_TRIAL_ENDING,
    SUBSCRIPTION_CANCELED,
    INVOICE_PAYMENT_FAILED,
    INVOICE_PAID,
    INVOICE_SENT,
    DUNNING_STEP,
    PAYMENT_METHOD_EXPIRING,
    TENANT_SUSPENDED,
    QUOTA_THRESHOLD,
    INVOICE_DISPUTED,
    INVOICE_DISPUTE_CLOSED,
)
