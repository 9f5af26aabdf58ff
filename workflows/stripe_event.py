"""StripeEventWorkflow (`stripe-event:{event_id}`): process one inbox event.

Find what the event concerns, update local projections it carries data for, re-read the invoice
from Stripe where order matters, and signal the subscription workflow. A failed attempt is
retried after an exponential backoff (schedule snapshotted in the input); when attempts run out
the inbox row is dead-lettered with the reason, for an operator to replay.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    import workflows.activity_refs as refs
    from billing.stripe_events import (
        INVOICE_EVENTS,
        PAYMENT_EVENTS,
        EventHandling,
    )
    from workflows.activity_refs import call, call_local
    from workflows.retry import DB_RETRY, NON_RETRYABLE_ERROR_TYPES
    from workflows.shared_io import RereadInvoiceInput, StripeInvoiceRead
    from workflows.stripe_event_io import (
        ApplyDisputeInput,
        DisputeApplied,
        FindPaymentInvoiceInput,
        MarkStripeEventInput,
        PaymentInvoice,
        ProjectStripeEventInput,
        ResolvedStripeEvent,
        ResolveStripeEventInput,
        StripeEventInput,
        StripeEventResult,
    )
    from workflows.subscription_io import StripeEventSignal

ACTIVITY_TIMEOUT = timedelta(seconds=30)
# Inbox reads and writes are short Postgres transactions in this worker's own process: local
# activities save the task-queue round trips (one workflow per event is the hot path). The
# Stripe re-read stays a normal activity on the rate-limited Stripe task queue.
# One try per processing attempt: the workflow owns the attempt count and the backoff, so the
# inbox row's `attempts` means what an operator expects.
ONE_TRY = RetryPolicy(maximum_attempts=1, non_retryable_error_types=NON_RETRYABLE_ERROR_TYPES)
SUBSCRIPTION_SIGNAL = "stripe_event"


def workflow_id(event_id: str, replay: int = 0) -> str:
    """`stripe-event:{event_id}` for the delivery; operator replay n runs as
    `stripe-event:{event_id}:replay:{n}` (a completed id is never reused)."""
    base = f"stripe-event:{event_id}"
    return base if replay == 0 else f"{base}:replay:{replay}"


def subscription_workflow_id(subscription_id: str) -> str:
    return f"subscription:{subscription_id}"


@workflow.defn(name="stripe_event")
class StripeEventWorkflow:
    @workflow.run
    async def run(self, input: StripeEventInput) -> StripeEventResult:
        schedule = input.schedule
        attempt = 0
        while True:
            attempt += 1
            workflow.set_current_details(f"attempt {attempt} of {schedule.max_attempts}")
            try:
                status, detail = await self._process(input)
            except ActivityError as err:
                reason = _reason(err)
                final = attempt >= schedule.max_attempts or _non_retryable(err)
                await self._mark(
                    input.event_id, "dead_lettered" if final else None, attempt, reason
                )
                workflow.set_current_details(
                    f"attempt {attempt} of {schedule.max_attempts} failed: {reason}"
                )
                if final:
                    workflow.logger.warning("dead-lettered %s: %s", input.event_id, reason)
                    return StripeEventResult(input.event_id, "dead_lettered", attempt, reason)
                await workflow.sleep(
                    timedelta(seconds=schedule.backoff_seconds(attempt)),
                    summary=f"backoff after attempt {attempt}",
                )
                continue
            await self._mark(input.event_id, status, attempt, detail)
            workflow.set_current_details(f"{status}" + (f": {detail}" if detail else ""))
            return StripeEventResult(input.event_id, status, attempt, detail)

    async def _process(self, input: StripeEventInput) -> tuple[str, str | None]:
        event: ResolvedStripeEvent = await call_local(
            refs.RESOLVE_STRIPE_EVENT,
            ResolveStripeEventInput(input.event_id),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ONE_TRY,
            summary="resolve the event",
        )
        if event.handling == EventHandling.DISPUTE:
            return await self._dispute(input, event)
        if event.handling == EventHandling.RECORD:
            return "processed", None  # recorded only (a replay of one lands here)
        if event.handling == EventHandling.IGNORE:
            return "ignored", "not an event type the engine handles"
        if event.handling == EventHandling.PROJECT:
            await call_local(
                refs.PROJECT_STRIPE_EVENT,
                ProjectStripeEventInput(input.event_id, event.tenant_id),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ONE_TRY,
                summary=f"project {event.event_type}",
            )
        invoice_status = event.invoice_status
        amount_paid = event.amount_paid
        hosted_url = event.hosted_invoice_url
        invoice_id = event.invoice_id
        subscription_id = event.subscription_id
        ordered = event.event_type in INVOICE_EVENTS or event.event_type in PAYMENT_EVENTS
        ours = event.tenant_id is not None or subscription_id is not None
        if ordered and ours and event.stripe_invoice_id is not None:
            # Stripe does not order deliveries: the invoice's current state, not the event's
            # snapshot, is what the subscription workflow acts on.
            current: StripeInvoiceRead = await call(
                refs.REREAD_STRIPE_INVOICE,
                RereadInvoiceInput(event.stripe_invoice_id),
                task_queue=input.stripe_task_queue,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ONE_TRY,
                summary="re-read the invoice from Stripe",
            )
            invoice_status = current.status
            amount_paid = current.amount_paid
            hosted_url = current.hosted_invoice_url or hosted_url
            invoice_id = invoice_id or current.metadata.get("invoice_id")
            subscription_id = subscription_id or current.metadata.get("subscription_id")
        if subscription_id is None:
            if event.handling == EventHandling.PROJECT and event.tenant_id is not None:
                return "processed", None
            return "ignored", "no engine subscription concerns this event"
        signal = StripeEventSignal(
            event_id=event.event_id,
            event_type=event.event_type,
            stripe_object_id=event.stripe_object_id,
            invoice_id=invoice_id,
            stripe_invoice_id=event.stripe_invoice_id,
            invoice_status=invoice_status,
            amount_paid=amount_paid,
            hosted_invoice_url=hosted_url,
            stripe_payment_method_id=event.stripe_payment_method_id,
            failure_message=event.failure_message,
        )
        target = workflow.get_external_workflow_handle(subscription_workflow_id(subscription_id))
        try:
            await target.signal(SUBSCRIPTION_SIGNAL, signal)
        except FailureError as err:
            # A finished subscription has nothing left to apply: recorded, not retried.
            return "processed", f"subscription workflow not running: {err.message}"
        return "processed", None

    async def _dispute(
        self, input: StripeEventInput, event: ResolvedStripeEvent
    ) -> tuple[str, str | None]:
        """A dispute names only the payment: find the invoice it paid in Stripe, then mark it
        (ADR 0021). The handling comes from the recorded resolve step, so a history recorded
        before disputes were handled replays down its own path."""
        found: PaymentInvoice = await call(
            refs.FIND_PAYMENT_INVOICE,
            FindPaymentInvoiceInput(event.payment_intent_id, event.charge_id),
            task_queue=input.stripe_task_queue,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ONE_TRY,
            summary="find the disputed invoice in Stripe",
        )
        if found.stripe_invoice_id is None:
            return "ignored", "the disputed payment paid no invoice Stripe knows of"
        applied: DisputeApplied = await call_local(
            refs.APPLY_DISPUTE,
            ApplyDisputeInput(input.event_id, found.stripe_invoice_id),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ONE_TRY,
            summary="mark the invoice disputed, notify, apply the policy",
        )
        return applied.status, applied.detail

    async def _mark(
        self, event_id: str, status: str | None, attempts: int, error: str | None
    ) -> None:
        await call_local(
            refs.MARK_STRIPE_EVENT,
            MarkStripeEventInput(event_id, status, attempts, error),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DB_RETRY,
            summary=f"mark {status or 'attempt failed'}",
        )


def _reason(err: ActivityError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'error'}: {cause.message}"
    return str(cause or err)


def _non_retryable(err: ActivityError) -> bool:
    cause = err.cause
    return isinstance(cause, ApplicationError) and (
        cause.non_retryable or (cause.type or "") in NON_RETRYABLE_ERROR_TYPES
    )
