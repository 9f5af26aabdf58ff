"""Stripe invoice and payment activities (stripe task queue), through the `StripeGateway` port.

Keys come from business identity only: `invoice:{invoice_id}` for the invoice (and its items),
`pay:{invoice_id}:{attempt}` for a collection attempt. A decline is data; transient errors
are retryable ApplicationErrors, invalid requests non-retryable ones (`to_application_error`)."""

from __future__ import annotations

from temporalio import activity

from activities.errors import domain_errors
from adapters import metrics
from billing.payments import (
    InvoiceLine,
    StripeGateway,
    StripeInvoice,
    StripePaymentMethodMissing,
)
from workflows.shared_io import StripeInvoiceRead
from workflows.subscription_io import (
    AttachPaymentMethodInput,
    CollectInvoiceInput,
    CollectInvoiceResult,
    CreateStripeInvoiceInput,
    PaymentMethodResult,
)


def _result(invoice: StripeInvoice) -> StripeInvoiceRead:
    return StripeInvoiceRead(
        stripe_invoice_id=invoice.id,
        status=invoice.status,
        amount_due=invoice.amount_due,
        amount_paid=invoice.amount_paid,
        hosted_invoice_url=invoice.hosted_invoice_url,
        invoice_pdf=invoice.invoice_pdf,
    )


class StripeBillingActivities:
    def __init__(self, gateway: StripeGateway) -> None:
        self._gateway = gateway

    @activity.defn(name="create_stripe_invoice")
    @domain_errors
    async def create_stripe_invoice(self, input: CreateStripeInvoiceInput) -> StripeInvoiceRead:
        invoice = await self._gateway.create_invoice(
            customer_id=input.customer_id,
            lines=[
                InvoiceLine(
                    line.description,
                    line.amount,
                    input.currency,
                    {"kind": line.kind},
                )
                for line in input.lines
            ],
            metadata={
                "invoice_id": input.invoice_id,
                "tenant_id": input.tenant_id,
                "subscription_id": input.subscription_id,
            },
            idempotency_key=f"invoice:{input.invoice_id}",
        )
        return _result(invoice)

    @activity.defn(name="collect_invoice")
    @domain_errors
    async def collect_invoice(self, input: CollectInvoiceInput) -> CollectInvoiceResult:
        """One collection attempt. From the second attempt on, the invoice is re-read first:
        attempts can be days apart (Stripe forgets keys after ~24 h), and an invoice paid
        meanwhile (another attempt, out of band) must never be charged again."""
        try:
            result = await self._collect(input)
        except StripePaymentMethodMissing:
            metrics.PAYMENT_ATTEMPTS.labels("collection", "no_payment_method").inc()
            raise
        metrics.PAYMENT_ATTEMPTS.labels("collection", result.outcome).inc()
        return result

    async def _collect(self, input: CollectInvoiceInput) -> CollectInvoiceResult:
        if input.attempt > 1:
            current = await self._gateway.retrieve_invoice(input.stripe_invoice_id)
            if current.status == "paid":
                return CollectInvoiceResult("already_paid", _result(current))
        outcome = await self._gateway.pay_invoice(
            input.stripe_invoice_id, idempotency_key=f"pay:{input.invoice_id}:{input.attempt}"
        )
        if outcome.succeeded:
            return CollectInvoiceResult("paid", _result(outcome.invoice))
        return CollectInvoiceResult(
            "requires_action" if outcome.requires_action else "declined",
            _result(outcome.invoice),
            decline_code=outcome.decline_code,
            failure_message=outcome.failure_message,
        )

    @activity.defn(name="attach_payment_method")
    @domain_errors
    async def attach_payment_method(self, input: AttachPaymentMethodInput) -> PaymentMethodResult:
        card = await self._gateway.attach_payment_method(
            input.customer_id,
            input.payment_method_id,
            idempotency_key=f"pm:{input.customer_id}:{input.payment_method_id}",
        )
        return PaymentMethodResult(
            card.payment_method_id, card.brand, card.last4, card.exp_month, card.exp_year
        )
