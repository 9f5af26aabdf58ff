"""DunningWorkflow (`dunning:{invoice_id}`): chase one unpaid invoice until it is paid or the
policy's schedule runs out.

Each step waits for the policy delay (a durable timer; a signal interrupts it), re-reads the
invoice from Stripe (Stripe keeps idempotency keys for about 24 hours only, so the invoice's
current status is what prevents charging an invoice paid meanwhile), then pays with key
`pay:{invoice_id}:{attempt}`. A decline is data: it is recorded in `dunning_attempts`, the
invoice row is projected, notifications are queued, and the next step waits. When the schedule
is exhausted the policy's final action runs in Stripe (mark uncollectible or void) and the
workflow returns `exhausted`.

Contract with the parent (the subscription workflow; see docs/adr/0005-dunning.md):

- Start it as a child with id `dunning_workflow_id(invoice_id)` when a renewal's collection
  fails, with `DunningInput` (policy snapshotted with `DunningPolicy.to_dict()`, `first_attempt`
  = the next attempt number, `invoice_version` = the invoice row's current version) and
  `parent_close_policy=ABANDON`, so the child survives the parent's continue-as-new.
- While it runs, the child is the only writer of the invoice row. Forward `payment_method_updated`
  and `invoice_paid` to it by id (`workflow.get_external_workflow_handle(dunning_workflow_id(..))`
  works in any run of the parent, so a parent that continued-as-new re-attaches by id).
- Learn the outcome from the child's result (`DunningResult`) when the handle is still held;
  in any case the child signals `dunning_finished` (payload `DunningResult`) to its parent's
  workflow id when it ends, which reaches the parent's current run after a continue-as-new.
  Postgres tells it too: `invoices.status` is `paid` (recovered or paid out of band),
  `uncollectible`/`void` (exhausted, or closed elsewhere) once the child has finished, and stays
  `open` while it runs.
- On `exhausted`: cancel the subscription `cancel_after_days` (policy) after
  `DunningResult.exhausted_at` (the grace window suspends the tenant on its own clock; suspend
  now if it has not). The child never touches tenants or subscriptions.

Signals are deduplicated by `event_id`; the workflow is short-lived (a bounded number of
attempts), so it never continues-as-new.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

with workflow.unsafe.imports_passed_through():
    import workflows.activity_refs as refs
    import workflows.notify as notice
    import workflows.search_attributes as sa
    from billing.dunning import (
        DunningPolicy,
        InvalidDunningPolicy,
        attempt_outcome,
        decide_after_reread,
        next_attempt,
        payment_key,
        retry_deadline,
        retry_delay,
    )
    from workflows.activity_refs import call
    from workflows.dunning_io import (
        DunningInput,
        DunningResult,
        DunningState,
        FinalActionInput,
        FinalActionResult,
        InvoicePaid,
        PaymentMethodUpdated,
        RecordAttemptInput,
        RetryPaymentInput,
        RetryPaymentResult,
    )
    from workflows.retry import db_activity, stripe_read, stripe_write
    from workflows.shared_io import (
        DunningNotification,
        InvoiceProjection,
        RereadInvoiceInput,
        StripeInvoiceRead,
    )


# Sent to the parent (if any) when dunning ends, with the DunningResult.
DUNNING_FINISHED_SIGNAL = "dunning_finished"

Trigger = Literal["scheduled", "payment_method_updated", "invoice_paid"]

# Runs started before this marker never upsert NextRetryAt (ADR 0011).
NEXT_RETRY_PATCH = "dunning-next-retry-attribute"

# What started a payment attempt, as the metrics and the projection name it.
CAUSES: dict[Trigger, str] = {"scheduled": "retry", "payment_method_updated": "new_card"}


def dunning_workflow_id(invoice_id: str) -> str:
    return f"dunning:{invoice_id}"


def _days(delay: timedelta) -> str:
    days = delay / timedelta(days=1)
    return f"{days:g} day" + ("" if days == 1 else "s")


@workflow.defn(name="dunning")
class DunningWorkflow:
    @workflow.init
    def __init__(self, input: DunningInput) -> None:
        # The input is known before `run` starts: a query or signal delivered with the first
        # workflow task sees the invoice it is about.
        self._input: DunningInput | None = input
        self._policy = DunningPolicy()
        self._phase = "waiting"
        self._attempts = 0
        self._last_attempt = 0
        self._scheduled_done = 0
        self._next_attempt_at: datetime | None = None
        self._outcome: str | None = None
        self._version = 0
        self._hosted_invoice_url: str | None = None
        self._handled_event_ids: list[str] = []
        self._duplicates = 0
        self._retry_requested = False
        self._paid_reported = False

    # ------------------------------------------------------------------------------ messages

    @workflow.signal(name="payment_method_updated")
    def payment_method_updated(self, signal: PaymentMethodUpdated) -> None:
        if self._first_time(signal.event_id):
            self._retry_requested = True

    @workflow.signal(name="invoice_paid")
    def invoice_paid(self, signal: InvoicePaid) -> None:
        if self._first_time(signal.event_id):
            self._paid_reported = True

    @workflow.query(name="state")
    def state(self) -> DunningState:
        assert self._input is not None
        return DunningState(
            invoice_id=self._input.invoice_id,
            phase=self._phase,
            attempts=self._attempts,
            last_attempt=self._last_attempt,
            scheduled_done=self._scheduled_done,
            scheduled_total=self._policy.scheduled_retries,
            next_attempt_at=self._next_attempt_at.isoformat() if self._next_attempt_at else None,
            outcome=self._outcome,
            handled_event_ids=list(self._handled_event_ids),
            ignored_duplicate_signals=self._duplicates,
        )

    def _first_time(self, event_id: str) -> bool:
        # Stripe delivers at least once and the webhook side may replay: apply each event once.
        if event_id in self._handled_event_ids:
            self._duplicates += 1
            return False
        self._handled_event_ids.append(event_id)
        return True

    # ------------------------------------------------------------------------------ the run

    @workflow.run
    async def run(self, input: DunningInput) -> DunningResult:
        result = await self._chase(input)
        await self._tell_parent(result)
        return result

    async def _tell_parent(self, result: DunningResult) -> None:
        """Signal `dunning_finished` to the parent by workflow id (no run id), so a parent that
        continued-as-new, and so lost its child handle, still learns the outcome."""
        parent = workflow.info().parent
        if parent is None:
            return
        try:
            await workflow.get_external_workflow_handle(parent.workflow_id).signal(
                DUNNING_FINISHED_SIGNAL, result
            )
        except FailureError:
            # The parent has closed (e.g. the subscription was canceled meanwhile); the outcome
            # stays readable in Postgres and in this workflow's result.
            workflow.logger.info("parent %s did not take dunning_finished", parent.workflow_id)

    async def _chase(self, input: DunningInput) -> DunningResult:
        self._input = input
        try:
            self._policy = DunningPolicy.from_dict(input.policy)
        except InvalidDunningPolicy as error:
            # A bad snapshot cannot heal by retrying the workflow task: fail the workflow.
            raise ApplicationError(str(error), type=error.code, non_retryable=True) from error
        if input.time_scale <= 0 or input.first_attempt < 1:
            raise ApplicationError(
                f"time_scale must be > 0 and first_attempt >= 1, got {input.time_scale} and "
                f"{input.first_attempt}",
                type="invalid_dunning_input",
                non_retryable=True,
            )
        self._last_attempt = input.first_attempt - 1
        self._version = input.invoice_version
        self._hosted_invoice_url = input.hosted_invoice_url
        workflow.upsert_search_attributes(
            [
                sa.TENANT_ID.value_set(input.tenant_id),
                sa.INVOICE_ID.value_set(input.invoice_id),
                sa.SUBSCRIPTION_ID.value_set(input.subscription_id),
            ]
        )

        # Deadlines count from the previous *scheduled* attempt (the first from now, just after
        # the renewal's failed collection); extra attempts never move them.
        previous_scheduled_at = workflow.now()
        while True:
            deadline = retry_deadline(
                self._policy, self._scheduled_done, previous_scheduled_at, input.time_scale
            )
            if deadline is None and not (self._retry_requested or self._paid_reported):
                return await self._exhaust()
            self._next_attempt_at = deadline
            self._phase = "waiting"
            self._describe_wait()
            trigger = await self._wait_for_trigger(deadline)

            self._phase = "attempting"
            step_started = workflow.now()
            invoice = await self._reread()
            decision = decide_after_reread(invoice.status)
            if decision == "stop_paid":
                return await self._finish_paid(invoice, "paid_out_of_band", "paid_out_of_band")
            if decision == "stop_closed":
                return await self._finish_closed(invoice)
            if trigger == "invoice_paid":
                # Reported paid but Stripe still says open (a stale or premature report): keep
                # the schedule as it was.
                continue

            if trigger == "scheduled":
                self._scheduled_done += 1
                previous_scheduled_at = step_started
            paid_invoice = await self._attempt(step_started, trigger)
            if paid_invoice is not None:
                return await self._finish_paid(paid_invoice, "recovered", CAUSES[trigger])

    async def _wait_for_trigger(self, deadline: datetime | None) -> Trigger:
        """Sleep until the deadline, or less if a signal arrives.

        A step re-reads the invoice and then pays with the customer's current card, so it serves
        every request pending when it starts: a card update that lands together with the timer
        does not cost a second attempt. A paid report alone only re-reads."""

        def signalled() -> bool:
            return self._paid_reported or self._retry_requested

        trigger: Trigger = "scheduled"
        if not signalled() and deadline is not None:
            remaining = deadline - workflow.now()
            if remaining > timedelta(0):
                try:
                    await workflow.wait_condition(
                        signalled, timeout=remaining, timeout_summary=self._wait_summary(deadline)
                    )
                except TimeoutError:
                    trigger = "scheduled"
                else:
                    trigger = "payment_method_updated" if self._retry_requested else "invoice_paid"
        elif signalled():
            trigger = "payment_method_updated" if self._retry_requested else "invoice_paid"
        if trigger == "invoice_paid":
            self._paid_reported = False
        else:
            self._paid_reported = self._retry_requested = False
        return trigger

    def _wait_summary(self, deadline: datetime) -> str:
        assert self._input is not None
        delay = retry_delay(self._policy, self._scheduled_done)
        summary = f"wait {_days(delay)}" if delay else "wait"
        if self._input.time_scale != 1.0:
            summary += f" at time scale {self._input.time_scale:g}"
        return summary + f" (until {deadline:%Y-%m-%d %H:%M} UTC)"

    async def _reread(self) -> StripeInvoiceRead:
        assert self._input is not None
        invoice: StripeInvoiceRead = await call(
            refs.REREAD_DUNNING_INVOICE,
            RereadInvoiceInput(self._input.stripe_invoice_id),
            **stripe_read(self._input.stripe_task_queue, "re-read invoice"),
        )
        if invoice.hosted_invoice_url:
            self._hosted_invoice_url = invoice.hosted_invoice_url
        return invoice

    async def _attempt(self, attempted_at: datetime, trigger: Trigger) -> StripeInvoiceRead | None:
        """One payment attempt, recorded and projected; the invoice when it is now paid."""
        assert self._input is not None
        inp = self._input
        attempt = next_attempt(self._last_attempt)
        self._last_attempt = attempt
        self._attempts += 1
        key = payment_key(inp.invoice_id, attempt)
        self._describe(f"attempt {attempt} of {self._total_attempts()}: retrying payment")
        decline_code: str | None = None
        failure_message: str | None = None
        paid_invoice: StripeInvoiceRead | None = None
        try:
            paid: RetryPaymentResult = await call(
                refs.RETRY_INVOICE_PAYMENT,
                RetryPaymentInput(inp.stripe_invoice_id, key),
                # Stripe forgets idempotency keys after about 24 hours: stop retrying this key
                # long before, and let the next step (which re-reads first) try again.
                **stripe_write(inp.stripe_task_queue, "retry payment"),
            )
        except ActivityError as error:
            if isinstance(error.cause, CancelledError):
                raise  # the workflow is being cancelled: not a failed attempt
            # Stripe did not answer within the window, or refused (e.g. no card on file): record
            # it as an error attempt and go on; the next step re-reads before paying again.
            outcome = "error"
            failure_message = str(error.cause or error)
            succeeded = False
        else:
            succeeded = paid.succeeded
            outcome = attempt_outcome(
                succeeded=paid.succeeded, requires_action=paid.requires_action
            )
            decline_code = paid.decline_code
            failure_message = paid.failure_message
            paid_invoice = paid.invoice if paid.succeeded else None
            if paid.invoice.hosted_invoice_url:
                self._hosted_invoice_url = paid.invoice.hosted_invoice_url

        next_at = None if succeeded else self._upcoming_deadline(attempted_at, trigger)
        step = self._payload(
            attempt=attempt,
            outcome=outcome,
            trigger=trigger,
            decline_code=decline_code,
            failure_message=failure_message,
            next_attempt_at=next_at.isoformat() if next_at else None,
        )
        notifications = [
            DunningNotification(
                notice.DUNNING_STEP, f"{notice.DUNNING_STEP}:{inp.invoice_id}:{attempt}", step
            )
        ]
        if not succeeded:
            notifications.append(
                DunningNotification(
                    notice.INVOICE_PAYMENT_FAILED,
                    f"invoice.payment_failed:{inp.invoice_id}:{attempt}",
                    step,
                )
            )
        await call(
            refs.RECORD_DUNNING_ATTEMPT,
            RecordAttemptInput(
                tenant_id=inp.tenant_id,
                invoice_id=inp.invoice_id,
                attempt=attempt,
                idempotency_key=key,
                attempted_at=attempted_at.isoformat(),
                outcome=outcome,
                decline_code=decline_code,
                failure_message=failure_message,
                notifications=notifications,
                cause=CAUSES.get(trigger),
            ),
            **db_activity(f"record attempt {attempt} ({outcome})"),
        )
        if paid_invoice is not None:
            return paid_invoice
        await self._project("open", amount_paid=0)
        return None

    def _upcoming_deadline(self, now: datetime, trigger: Trigger) -> datetime | None:
        """The next scheduled attempt after this one, for the customer-facing notification."""
        assert self._input is not None
        if self._next_attempt_at is not None and trigger != "scheduled":
            return self._next_attempt_at
        return retry_deadline(self._policy, self._scheduled_done, now, self._input.time_scale)

    async def _exhaust(self) -> DunningResult:
        assert self._input is not None
        inp = self._input
        self._phase = "closing"
        self._next_attempt_at = None
        action = self._policy.final_action
        self._describe(f"schedule exhausted after attempt {self._last_attempt}: {action}")
        closed: FinalActionResult = await call(
            refs.CLOSE_UNRECOVERED_INVOICE,
            FinalActionInput(inp.invoice_id, inp.stripe_invoice_id, action),
            # No schedule-to-close: closing is idempotent by state (an invoice already in the
            # target state is returned as is), so an expired key cannot cause a second effect.
            **stripe_read(inp.stripe_task_queue, action.replace("_", " ")),
        )
        if closed.invoice.status == "paid":
            return await self._finish_paid(closed.invoice, "paid_out_of_band", "paid_out_of_band")
        exhausted_at = workflow.now()
        payload = self._payload(
            attempt=self._last_attempt,
            outcome="exhausted",
            final_action=action,
            invoice_status=closed.invoice.status,
            cancel_after_days=self._policy.cancel_after_days,
        )
        await self._project(
            closed.invoice.status,
            amount_paid=closed.invoice.amount_paid,
            notifications=[
                DunningNotification(
                    notice.DUNNING_STEP,
                    f"{notice.DUNNING_STEP}:{inp.invoice_id}:exhausted",
                    payload,
                )
            ],
        )
        return self._result("exhausted", closed.invoice.status, exhausted_at=exhausted_at)

    async def _finish_paid(
        self, invoice: StripeInvoiceRead, outcome: str, cause: str
    ) -> DunningResult:
        assert self._input is not None
        inp = self._input
        payload = self._payload(
            attempt=self._last_attempt, outcome=outcome, amount_paid=invoice.amount_paid
        )
        await self._project(
            "paid",
            amount_paid=invoice.amount_paid,
            paid_at=workflow.now(),
            notifications=[
                # The same message id the webhook side uses for this event, so the tenant
                # hears of the payment once whichever path saw it first.
                DunningNotification(
                    notice.INVOICE_PAID, f"{notice.INVOICE_PAID}:{inp.invoice_id}", payload
                )
            ],
            recovered_by=cause,
        )
        return self._result(outcome, "paid")

    async def _finish_closed(self, invoice: StripeInvoiceRead) -> DunningResult:
        await self._project(invoice.status, amount_paid=invoice.amount_paid)
        return self._result("voided_elsewhere", invoice.status)

    async def _project(
        self,
        status: str,
        *,
        amount_paid: int,
        paid_at: datetime | None = None,
        notifications: list[DunningNotification] | None = None,
        recovered_by: str | None = None,
    ) -> None:
        assert self._input is not None
        self._version += 1
        await call(
            refs.PROJECT_DUNNING_INVOICE,
            InvoiceProjection(
                tenant_id=self._input.tenant_id,
                invoice_id=self._input.invoice_id,
                version=self._version,
                status=status,
                attempt_count=self._last_attempt,
                amount_paid=amount_paid,
                paid_at=paid_at.isoformat() if paid_at else None,
                notifications=notifications or [],
                recovered_by=recovered_by,
            ),
            **db_activity(f"project invoice {status}"),
        )

    # ------------------------------------------------------------------------------ helpers

    def _result(
        self, outcome: str, status: str, *, exhausted_at: datetime | None = None
    ) -> DunningResult:
        assert self._input is not None
        self._outcome = outcome
        self._phase = "finished"
        self._next_attempt_at = None
        self._describe(f"{outcome} after {self._attempts} dunning attempt(s); invoice {status}")
        return DunningResult(
            invoice_id=self._input.invoice_id,
            outcome=outcome,
            attempts=self._attempts,
            final_invoice_status=status,
            last_attempt=self._last_attempt,
            invoice_version=self._version,
            exhausted_at=exhausted_at.isoformat() if exhausted_at else None,
        )

    def _payload(self, **extra: Any) -> dict[str, Any]:
        assert self._input is not None
        inp = self._input
        return {
            "invoice_id": inp.invoice_id,
            "stripe_invoice_id": inp.stripe_invoice_id,
            "subscription_id": inp.subscription_id,
            "amount_due": inp.amount_due,
            "currency": inp.currency,
            "hosted_invoice_url": self._hosted_invoice_url,
            "total_attempts": self._total_attempts(),
            **extra,
        }

    def _total_attempts(self) -> int:
        assert self._input is not None
        # Extra attempts (card updates) come on top of the scheduled ones.
        scheduled_left = self._policy.scheduled_retries - self._scheduled_done
        return self._last_attempt + scheduled_left

    def _describe_wait(self) -> None:
        if self._next_attempt_at is None:
            return
        if workflow.patched(NEXT_RETRY_PATCH):
            # Left as it is when dunning ends: operators list `ExecutionStatus="Running"`
            # (unsetting a datetime attribute breaks `describe()` on the time-skipping server).
            workflow.upsert_search_attributes([sa.NEXT_RETRY_AT.value_set(self._next_attempt_at)])
        self._describe(
            f"attempt {self._last_attempt} of {self._total_attempts()} failed, "
            f"next retry {self._next_attempt_at.isoformat()}"
        )

    def _describe(self, text: str) -> None:
        workflow.set_current_details(text)
