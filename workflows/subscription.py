"""SubscriptionWorkflow (`subscription:{id}`): one subscription's whole life.

The workflow owns the billing clock. Each run covers one stretch between boundaries (trial end or
a period end); at a boundary it bills, then continues as new carrying `SubscriptionCarry`, so a
subscription that lives for years keeps a short history.

Amounts come from `billing.invoicing` only, so `preview` and the real change use the same code.
Commands arrive as Updates whose validators call `billing.lifecycle`: a refused command leaves no
trace in history. Every state change is projected to Postgres with a growing version, and
recorded in `subscription_changes` + `audit_log` with the actor.

Demo clock: business time runs `time_scale` times faster than workflow time. Business instants
(period bounds, proration) come from `_business_now()`; only timer durations are scaled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    WorkflowAlreadyStartedError,
)
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    import workflows.activity_refs as refs
    import workflows.notify as notice
    import workflows.search_attributes as sa
    from billing.catalog import Interval, Plan
    from billing.dunning import DunningPolicy
    from billing.errors import InvalidTransition
    from billing.invoicing import (
        InvoiceDraft,
        Line,
        LineKind,
        base_line,
        compose_invoice,
        proration_lines,
    )
    from billing.lifecycle import Command, LifecycleFacts, Status, check_cancel, check_command
    from billing.periods import BusinessClock, card_expires_at, period_bounds
    from billing.plan_changes import next_invoice, price_change
    from workflows.activity_refs import call
    from workflows.dunning import DUNNING_FINISHED_SIGNAL, DunningWorkflow, dunning_workflow_id
    from workflows.dunning_io import DunningInput, DunningResult, InvoicePaid, PaymentMethodUpdated
    from workflows.errors import domain_errors
    from workflows.grace_io import PeriodOverageInput, PeriodOverageResult
    from workflows.io import (
        AttachPaymentMethodInput,
        CancelRequest,
        ChangePlanRequest,
        ChangePlanResult,
        CollectInvoiceInput,
        CollectInvoiceResult,
        CreateStripeInvoiceInput,
        EnsureCustomerInput,
        EnsureCustomerResult,
        InvoiceLinePayload,
        InvoiceProjection,
        LifecycleRequest,
        LifecycleResult,
        OpenInvoice,
        PauseRequest,
        PaymentMethodResult,
        PlanSnapshot,
        PreviewRequest,
        PreviewResult,
        RecordCustomerInput,
        RecordInvoiceInput,
        RecordPaymentMethodInput,
        SetPaymentMethodRequest,
        StripeEventSignal,
        StripeInvoiceResult,
        SubscriptionCarry,
        SubscriptionChange,
        SubscriptionInput,
        SubscriptionProjection,
        SubscriptionResult,
        SubscriptionState,
    )
    from workflows.payment_grace import resolve_payment_grace, start_payment_grace
    from workflows.retry import DB_RETRY, STRIPE_RETRY, STRIPE_WRITE_SCHEDULE_TO_CLOSE

# How old a preview's proration_date may be when the change is made (wall time).
PRORATION_DATE_MAX_AGE = timedelta(hours=1)
ACTIVITY_TIMEOUT = timedelta(seconds=30)
# Guards every command added with dunning and notifications (issue 4), so histories recorded
# before them replay unchanged (tests/replay/histories/subscription/).
DUNNING_WIRING = "dunning-wiring"
# Guards the payment grace window opened beside each dunning child (ADR 0006).
PAYMENT_GRACE_WIRING = "payment-grace-wiring"
TRIAL_ENDING_NOTICE = timedelta(days=3)
CARD_EXPIRING_NOTICE = timedelta(days=30)
# Event ids remembered for deduplication (Stripe redelivers within days, not thousands of events).
SEEN_EVENTS_KEPT = 200
PAID_EVENTS = frozenset({"invoice.paid", "invoice.payment_succeeded"})
FAILED_EVENTS = frozenset({"invoice.payment_failed"})
PAYMENT_METHOD_EVENTS = frozenset(
    {
        "payment_method.attached",
        "payment_method.updated",
        "payment_method.automatically_updated",
    }
)


def workflow_id(subscription_id: str) -> str:
    return f"subscription:{subscription_id}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _earliest(first: datetime | None, second: datetime | None) -> datetime | None:
    if first is None or second is None:
        return first or second
    return min(first, second)


def _payload(line: Line) -> InvoiceLinePayload:
    return InvoiceLinePayload(
        kind=line.kind.value,
        description=line.description,
        amount=line.amount,
        metric=line.metric,
        quantity=line.quantity,
        period_start=_iso(line.period_start),
        period_end=_iso(line.period_end),
    )


def _check_apply_before(apply_before: str | None) -> None:
    """Refuse a command accepted after its caller gave up (see ADR 0002, update timeouts)."""
    deadline = _dt(apply_before)
    if deadline is not None and workflow.now() > deadline:
        raise InvalidTransition(
            "the request expired before a worker could apply it; nothing was changed"
        )


def _plan(snapshot: PlanSnapshot) -> Plan:
    return Plan.from_dict(snapshot.definition)


@workflow.defn(name="subscription")
class SubscriptionWorkflow:
    @workflow.init
    def __init__(self, input: SubscriptionInput) -> None:
        # State exists before the first line of `run`: an Update delivered with the very first
        # workflow task is validated against it instead of against nothing.
        self._input: SubscriptionInput | None = input
        now = workflow.now()
        self._c: SubscriptionCarry | None = input.carry or SubscriptionCarry(
            status=Status.INCOMPLETE.value,
            plan=input.plan,
            customer_id=None,
            anchor=None,
            period_index=0,
            trial_end=None,
            cancel_at_period_end=False,
            canceled_at=None,
            paused_at=None,
            resume_at=None,
            pending_plan=None,
            credit_balance=0,
            version=0,
            invoice_version=0,
            change_seq=0,
            has_payment_method=False,
            wall_origin=now.isoformat(),
            business_origin=input.business_start or now.isoformat(),
        )
        # One command or boundary at a time: handlers and the main loop both run activities.
        self._lock = asyncio.Lock()
        # Bumped by every handler that moves the clock's next deadline; wakes the main loop.
        self._generation = 0

    @workflow.run
    async def run(self, input: SubscriptionInput) -> SubscriptionResult:
        assert self._c is not None
        # Pin the patch marker to the start of every run, so later edits that move the first
        # `_wired()` call site cannot shift it in recorded histories.
        self._wired()
        self._grace_wired()
        if input.carry is None:
            async with self._lock:
                await self._start()
        self._publish()

        while self._c.status != Status.CANCELED.value:
            generation = self._generation
            deadline = self._next_deadline()
            if workflow.info().is_continue_as_new_suggested():
                # Long quiet stretches (a pause with no end date) still get a fresh history.
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(replace(input, carry=self._c))
            if deadline is None:
                await workflow.wait_condition(self._moved_since(generation))
                continue
            wait = self._wall_until(deadline)
            if wait > timedelta(0):
                try:
                    await workflow.wait_condition(
                        self._moved_since(generation),
                        timeout=wait,
                        timeout_summary=self._deadline_summary(),
                    )
                    continue  # a handler moved the deadline: recompute it
                except TimeoutError:
                    pass
            async with self._lock:
                if self._generation != generation or self._next_deadline() != deadline:
                    continue  # a handler got the lock first and changed the plan of record
                boundary = await self._on_deadline(deadline)
            if boundary and self._c.status != Status.CANCELED.value:
                # Let in-flight updates finish (their results must reach their callers), then
                # start a fresh history carrying the state.
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(replace(input, carry=self._c))
        await workflow.wait_condition(workflow.all_handlers_finished)
        return SubscriptionResult(input.subscription_id, self._c.status)

    async def _start(self) -> None:
        inp, c = self._require()
        customer: EnsureCustomerResult = await call(
            refs.ENSURE_STRIPE_CUSTOMER,
            # Only the payload grows (ADR 0007): the same activity is scheduled, so recorded
            # histories replay unchanged.
            EnsureCustomerInput(
                inp.tenant_id, inp.tenant_name, inp.tenant_email, inp.stripe_customer_id
            ),
            task_queue=inp.stripe_task_queue,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            schedule_to_close_timeout=STRIPE_WRITE_SCHEDULE_TO_CLOSE,
            retry_policy=STRIPE_RETRY,
            summary="ensure Stripe customer",
        )
        await call(
            refs.RECORD_STRIPE_CUSTOMER,
            RecordCustomerInput(inp.tenant_id, customer.customer_id),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DB_RETRY,
            summary="record Stripe customer",
        )
        self._c = replace(c, customer_id=customer.customer_id)
        if inp.payment_method_id:
            try:
                await self._attach_payment_method(inp.payment_method_id)
            except ActivityError as error:
                # A card refused at sign-up must not kill the subscription: it starts without
                # one (the trial-end policy or a failed first collection handles the rest).
                workflow.logger.warning("payment method not attached: %s", error.cause)
        # Whole seconds: anchors and trial ends read as clean instants in statements and the UI.
        now = self._business_now().replace(microsecond=0)
        trial_days = inp.trial_days if inp.trial_days is not None else _plan(inp.plan).trial_days
        if trial_days > 0:
            trial_end = now + timedelta(days=trial_days)
            self._c = replace(self._c, status=Status.TRIALING.value, trial_end=_iso(trial_end))
            if self._wired():
                # A trial shorter than the notice gets its notice at once.
                notice_at = max(now, trial_end - TRIAL_ENDING_NOTICE)
                self._c = replace(self._c, trial_ending_notice_at=notice_at.isoformat())
            await self._record_change("trial_started", inp.actor, Status.INCOMPLETE.value, now)
            await self._project()
        else:
            await self._activate(now, inp.actor, Status.INCOMPLETE.value, "activated")

    async def _activate(self, at: datetime, actor: str, from_status: str, kind: str) -> None:
        """Open period 0 anchored at `at` and bill its base fee in advance."""
        inp, c = self._require()
        at = at.replace(microsecond=0)
        self._c = replace(
            c,
            # A change scheduled "at period end" during a trial applies from activation.
            plan=c.pending_plan or c.plan,
            pending_plan=None,
            status=Status.ACTIVE.value,
            anchor=at.isoformat(),
            period_index=0,
            trial_ending_notice_at=None,
            paused_at=None,
            resume_at=None,
        )
        period = self._period()
        plan = _plan(self._c.plan)
        base = base_line(plan, self._interval(), period)
        draft = compose_invoice(plan.currency, [base] if base else [], self._c.credit_balance)
        await self._issue(draft, "subscription_create", f"start:{period[0].isoformat()}", period)
        await self._record_change(kind, actor, from_status, at)
        await self._project()
        if kind != "resumed":
            await self._notify(
                notice.SUBSCRIPTION_ACTIVATED,
                f"{notice.SUBSCRIPTION_ACTIVATED}:{inp.subscription_id}",
                {
                    "subscription_id": inp.subscription_id,
                    "plan_code": self._require()[1].plan.code,
                    "interval": inp.interval,
                    "current_period_end": period[1].isoformat(),
                },
            )

    def _next_deadline(self) -> datetime | None:
        """The main loop's next wake-up: the billing clock's deadline or a pending notice."""
        c = self._require()[1]
        if c.status == Status.CANCELED.value:
            return None
        notices = _earliest(_dt(c.card_expiring_notice_at), _dt(c.trial_ending_notice_at))
        return _earliest(self._next_billing_deadline(), notices)

    def _next_billing_deadline(self) -> datetime | None:
        c = self._require()[1]
        if c.status == Status.TRIALING.value:
            return _dt(c.trial_end)
        if c.status == Status.PAUSED.value:
            return _dt(c.resume_at)
        if c.status in (Status.ACTIVE.value, Status.PAST_DUE.value):
            return _earliest(self._period()[1], _dt(c.cancel_due_at))
        return None

    def _deadline_summary(self, *, billing_only: bool = False) -> str:
        c = self._require()[1]
        deadline = self._next_billing_deadline() if billing_only else self._next_deadline()
        if c.card_expiring_notice_at and _dt(c.card_expiring_notice_at) == deadline:
            return "card expiring notice"
        if c.trial_ending_notice_at and _dt(c.trial_ending_notice_at) == deadline:
            return "trial ending notice"
        if c.status == Status.TRIALING.value:
            return "trial ends"
        if c.cancel_due_at is not None and _dt(c.cancel_due_at) == deadline:
            return "cancel for non-payment"
        if c.status == Status.PAUSED.value:
            return "pause ends"
        return "cancel at period end" if c.cancel_at_period_end else "renewal"

    async def _on_deadline(self, deadline: datetime) -> bool:
        """Handle the boundary reached at `deadline`; True when a new run should start."""
        inp, c = self._require()
        if deadline == _dt(c.card_expiring_notice_at):
            self._c = replace(c, card_expiring_notice_at=None)
            card = c.card
            assert card is not None
            await self._notify(
                notice.PAYMENT_METHOD_EXPIRING,
                f"{notice.PAYMENT_METHOD_EXPIRING}:{card.payment_method_id}:"
                f"{card.exp_year}-{card.exp_month}",
                {
                    "payment_method_id": card.payment_method_id,
                    "brand": card.brand,
                    "last4": card.last4,
                    "exp_month": card.exp_month,
                    "exp_year": card.exp_year,
                },
            )
            self._publish()
            return False
        if deadline == _dt(c.trial_ending_notice_at):
            self._c = replace(c, trial_ending_notice_at=None)
            if c.status != Status.TRIALING.value:
                return False  # the trial ended early: nothing to announce
            await self._notify(
                notice.SUBSCRIPTION_TRIAL_ENDING,
                f"{notice.SUBSCRIPTION_TRIAL_ENDING}:{inp.subscription_id}:{c.trial_end}",
                {"subscription_id": inp.subscription_id, "trial_end": c.trial_end},
            )
            self._publish()
            return False
        if c.status == Status.TRIALING.value:
            await self._end_trial(deadline)
            return True
        if deadline == _dt(c.cancel_due_at):
            await self._cancel_for_nonpayment(deadline)
            return True
        if c.status == Status.PAUSED.value:
            await self._activate(deadline, "system", Status.PAUSED.value, "resumed")
            self._publish()
            return True
        await self._renew()
        return True

    async def _end_trial(self, at: datetime) -> None:
        inp, c = self._require()
        if c.has_payment_method:
            await self._activate(at, "system", Status.TRIALING.value, "trial_converted")
        elif inp.trial_end_policy == "cancel":
            self._c = replace(c, status=Status.CANCELED.value, canceled_at=at.isoformat())
            await self._record_change("trial_expired_canceled", "system", Status.TRIALING.value, at)
            await self._project()
            await self._notify_canceled("trial_expired")
        else:
            self._c = replace(c, status=Status.PAUSED.value, paused_at=at.isoformat())
            await self._record_change("trial_expired_paused", "system", Status.TRIALING.value, at)
            await self._project()
        self._publish()

    async def _renew(self) -> None:
        """Close the current period (overage in arrears) and open the next (base in advance)."""
        inp, c = self._require()
        closed = self._period()
        closing_plan = _plan(c.plan)
        lines: list[Line] = list(await self._overage(closed, c.plan))
        if c.cancel_at_period_end:
            draft = compose_invoice(closing_plan.currency, lines, c.credit_balance)
            await self._issue(draft, "final", f"final:{closed[0].isoformat()}", closed)
            self._c = replace(
                self._require()[1],
                status=Status.CANCELED.value,
                canceled_at=closed[1].isoformat(),
                cancel_at_period_end=False,
            )
            await self._record_change("canceled", "system", c.status, closed[1])
            await self._project()
            await self._notify_canceled("canceled_at_period_end")
            return
        from_plan = c.plan.code
        if c.pending_plan is not None:
            # A scheduled downgrade takes effect with the new period.
            self._c = replace(c, plan=c.pending_plan, pending_plan=None)
        self._c = replace(self._require()[1], period_index=self._require()[1].period_index + 1)
        opened = self._period()
        plan = _plan(self._require()[1].plan)
        base = base_line(plan, self._interval(), opened)
        if base is not None:
            lines.insert(0, base)
        draft = compose_invoice(plan.currency, lines, self._require()[1].credit_balance)
        await self._issue(draft, "subscription_cycle", f"cycle:{opened[0].isoformat()}", opened)
        kind = "plan_changed" if from_plan != plan.code else "renewed"
        await self._record_change(
            kind, "system", c.status, opened[0], from_plan=from_plan, to_plan=plan.code
        )
        await self._project()

    # ------------------------------------------------------------------------------ invoices

    async def _issue(
        self,
        draft: InvoiceDraft,
        reason: str,
        key_suffix: str,
        period: tuple[datetime, datetime] | None,
    ) -> str | None:
        """Write, mirror and collect one invoice. Returns its id, None when nothing is owed
        and no line is worth a document (e.g. a free plan's renewal)."""
        inp, c = self._require()
        self._c = replace(c, credit_balance=draft.credit_balance_after)
        if not draft.lines or draft.total == 0:
            # Nothing to collect: credits already moved into the balance; no document is
            # produced for an all-zero invoice (Stripe cannot collect zero anyway).
            return None
        invoice_id = str(workflow.uuid4())
        lines = [_payload(line) for line in draft.lines]
        self._c = replace(
            self._c,
            invoice_version=self._c.invoice_version + 1,
            invoices_issued=c.invoices_issued + 1,
        )
        await call(
            refs.RECORD_INVOICE,
            RecordInvoiceInput(
                invoice_id=invoice_id,
                tenant_id=inp.tenant_id,
                subscription_id=inp.subscription_id,
                billing_key=f"sub:{inp.subscription_id}:{key_suffix}",
                billing_reason=reason,
                currency=draft.currency,
                subtotal=draft.subtotal,
                total=draft.total,
                lines=lines,
                period_start=_iso(period[0]) if period else None,
                period_end=_iso(period[1]) if period else None,
                version=self._c.invoice_version,
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DB_RETRY,
            summary=f"record invoice ({reason})",
        )
        assert self._c.customer_id is not None
        stripe_invoice: StripeInvoiceResult = await call(
            refs.CREATE_STRIPE_INVOICE,
            CreateStripeInvoiceInput(
                invoice_id=invoice_id,
                customer_id=self._c.customer_id,
                currency=draft.currency,
                lines=lines,
                tenant_id=inp.tenant_id,
                subscription_id=inp.subscription_id,
            ),
            task_queue=inp.stripe_task_queue,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            schedule_to_close_timeout=STRIPE_WRITE_SCHEDULE_TO_CLOSE,
            retry_policy=STRIPE_RETRY,
            summary="mirror invoice to Stripe",
        )
        open_invoice = OpenInvoice(invoice_id, stripe_invoice.stripe_invoice_id, draft.total)
        self._c = replace(self._c, open_invoices=[*self._c.open_invoices, open_invoice])
        await self._project_invoice(invoice_id, "open", stripe_invoice)
        await self._collect(open_invoice)
        return invoice_id

    async def _collect(self, invoice: OpenInvoice) -> None:
        inp, c = self._require()
        assert invoice.stripe_invoice_id is not None
        attempt = invoice.attempts + 1
        self._c = replace(
            c,
            open_invoices=[
                replace(i, attempts=attempt) if i.invoice_id == invoice.invoice_id else i
                for i in c.open_invoices
            ],
        )
        try:
            result: CollectInvoiceResult = await call(
                refs.COLLECT_INVOICE,
                CollectInvoiceInput(invoice.invoice_id, invoice.stripe_invoice_id, attempt),
                task_queue=inp.stripe_task_queue,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                schedule_to_close_timeout=STRIPE_WRITE_SCHEDULE_TO_CLOSE,
                retry_policy=STRIPE_RETRY,
                summary=f"collect invoice (attempt {attempt})",
            )
        except ActivityError as error:
            cause = error.cause
            if (
                not isinstance(cause, ApplicationError)
                or cause.type != "stripe_payment_method_missing"
            ):
                raise
            # No card on file is a failed collection, not a broken workflow.
            result = CollectInvoiceResult(
                outcome="no_payment_method",
                invoice=StripeInvoiceResult(
                    invoice.stripe_invoice_id, "open", invoice.total, 0, None, None
                ),
                failure_message=cause.message,
            )
        paid = result.outcome in ("paid", "already_paid")
        await self._project_invoice(
            invoice.invoice_id,
            "paid" if paid else result.invoice.status,
            result.invoice,
            attempt=attempt,
            outcome=result.outcome,
            decline_code=result.decline_code,
            failure_message=result.failure_message,
        )
        if paid:
            self._settled(invoice.invoice_id)
            await self._notify(
                notice.INVOICE_PAID,
                f"{notice.INVOICE_PAID}:{invoice.invoice_id}",
                {
                    "invoice_id": invoice.invoice_id,
                    "amount_paid": result.invoice.amount_paid,
                    "currency": _plan(self._require()[1].plan).currency,
                },
            )
            return
        if self._c is not None and self._c.status == Status.ACTIVE.value:
            self._c = replace(self._c, status=Status.PAST_DUE.value)
            await self._record_change(
                "payment_failed",
                "system",
                Status.ACTIVE.value,
                self._business_now(),
                details={"invoice_id": invoice.invoice_id, "decline_code": result.decline_code},
            )
        if self._wired():
            await self._notify(
                notice.INVOICE_PAYMENT_FAILED,
                f"{notice.INVOICE_PAYMENT_FAILED}:{invoice.invoice_id}:{attempt}",
                {
                    "invoice_id": invoice.invoice_id,
                    "amount_due": invoice.total,
                    "currency": _plan(self._require()[1].plan).currency,
                    "failure_message": result.failure_message,
                    "hosted_invoice_url": result.invoice.hosted_invoice_url,
                },
            )
            await self._start_dunning(invoice, attempt, result.invoice.hosted_invoice_url)
            await self._open_payment_grace(invoice.invoice_id)

    # ------------------------------------------------------------------------------ dunning

    def _wired(self) -> bool:
        return workflow.patched(DUNNING_WIRING)

    def _grace_wired(self) -> bool:
        return self._wired() and workflow.patched(PAYMENT_GRACE_WIRING)

    async def _open_payment_grace(self, invoice_id: str) -> None:
        """Access continues until the grace window expires, then the tenant is suspended until
        the invoice is paid; the window outlives this run and is reached again by its id."""
        inp = self._require()[0]
        if self._grace_wired():
            await start_payment_grace(
                inp.tenant_id,
                invoice_id,
                inp.payment_grace_days * 86_400,
                time_scale=inp.time_scale,
            )

    async def _close_payment_grace(self, invoice_id: str, resolution: str) -> None:
        """ "paid" lifts a suspension the window caused; "voided"/"canceled" close it and keep
        the suspension (ADR 0006). A no-op when no window is open for the invoice."""
        inp = self._require()[0]
        if self._grace_wired():
            await resolve_payment_grace(
                inp.tenant_id, invoice_id, resolution, f"workflow:{workflow.info().workflow_id}"
            )

    async def _start_dunning(
        self, invoice: OpenInvoice, attempt: int, hosted_invoice_url: str | None
    ) -> None:
        """Hand the unpaid invoice to its `dunning:{invoice_id}` child (ADR 0005). ABANDON: the
        child must outlive this run's continue-as-new; later runs reach it by id."""
        inp, c = self._require()
        if invoice.invoice_id in c.dunning_invoice_ids:
            return
        assert invoice.stripe_invoice_id is not None
        try:
            await workflow.start_child_workflow(
                DunningWorkflow.run,
                DunningInput(
                    invoice_id=invoice.invoice_id,
                    stripe_invoice_id=invoice.stripe_invoice_id,
                    tenant_id=inp.tenant_id,
                    subscription_id=inp.subscription_id,
                    currency=_plan(c.plan).currency,
                    amount_due=invoice.total,
                    hosted_invoice_url=hosted_invoice_url,
                    policy=inp.dunning_policy,
                    stripe_task_queue=inp.stripe_task_queue,
                    time_scale=inp.time_scale,
                    first_attempt=attempt + 1,
                    invoice_version=c.invoice_version,
                ),
                id=dunning_workflow_id(invoice.invoice_id),
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"dunning of invoice {invoice.invoice_id}",
            )
        except WorkflowAlreadyStartedError:
            pass  # already chasing this invoice: attach to it
        c = self._require()[1]
        self._c = replace(c, dunning_invoice_ids=[*c.dunning_invoice_ids, invoice.invoice_id])

    async def _signal_dunning(
        self, invoice_id: str, signal: str, payload: PaymentMethodUpdated | InvoicePaid
    ) -> None:
        """Forward to the child by id: works from any run, including after continue-as-new."""
        try:
            await workflow.get_external_workflow_handle(dunning_workflow_id(invoice_id)).signal(
                signal, payload
            )
        except FailureError:
            # The child has just finished: its `dunning_finished` is on the way to us.
            workflow.logger.info("dunning of %s did not take %s", invoice_id, signal)

    async def _forward_card_update(self, event_id: str, payment_method_id: str | None) -> None:
        for invoice_id in list(self._require()[1].dunning_invoice_ids):
            await self._signal_dunning(
                invoice_id,
                "payment_method_updated",
                PaymentMethodUpdated(event_id, payment_method_id),
            )

    @workflow.signal(name=DUNNING_FINISHED_SIGNAL)
    async def dunning_finished(self, result: DunningResult) -> None:
        async with self._lock:
            inp, c = self._require()
            if result.invoice_id not in c.dunning_invoice_ids:
                return  # not ours, or already applied
            self._c = replace(
                c,
                dunning_invoice_ids=[i for i in c.dunning_invoice_ids if i != result.invoice_id],
                # The child wrote the invoice row up to this version; later writes go above it.
                invoice_version=max(c.invoice_version, result.invoice_version),
            )
            before = self._c.status
            now = self._business_now()
            if result.outcome == "exhausted":
                # The invoice stays owed (uncollectible can still be paid, e.g. on the hosted
                # page): the cancel is due after the policy's delay unless it is paid first.
                policy = DunningPolicy.from_dict(inp.dunning_policy)
                exhausted = _dt(result.exhausted_at)
                start = self._business_at(exhausted) if exhausted else now
                due = start.replace(microsecond=0) + timedelta(days=policy.cancel_after_days)
                self._c = replace(
                    self._c,
                    cancel_due_at=_iso(_earliest(due, _dt(self._c.cancel_due_at))),
                    # The child's attempts count too: a later write must not lower attempt_count.
                    open_invoices=[
                        replace(i, attempts=max(i.attempts, result.last_attempt))
                        if i.invoice_id == result.invoice_id
                        else i
                        for i in self._c.open_invoices
                    ],
                )
                kind = "dunning_exhausted"
            else:
                # recovered | paid_out_of_band | voided_elsewhere: nothing is owed on it any more.
                self._settled(result.invoice_id)
                await self._close_payment_grace(
                    result.invoice_id,
                    "voided" if result.outcome == "voided_elsewhere" else "paid",
                )
                kind = (
                    "payment_recovered"
                    if result.outcome != "voided_elsewhere"
                    else "invoice_voided"
                )
            await self._record_change(
                kind,
                "system",
                before,
                now,
                details={
                    "invoice_id": result.invoice_id,
                    "outcome": result.outcome,
                    "attempts": result.attempts,
                    "cancel_due_at": self._require()[1].cancel_due_at,
                },
            )
            await self._project()
            self._generation += 1

    async def _cancel_for_nonpayment(self, at: datetime) -> None:
        c = self._require()[1]
        for unpaid in c.open_invoices:
            await self._close_payment_grace(unpaid.invoice_id, "canceled")
        self._c = replace(
            c,
            status=Status.CANCELED.value,
            canceled_at=at.isoformat(),
            cancel_at_period_end=False,
            pending_plan=None,
            cancel_due_at=None,
        )
        await self._record_change(
            "canceled", "system", c.status, at, details={"reason": "nonpayment"}
        )
        await self._project()
        await self._notify_canceled("nonpayment")

    async def _notify(self, event_type: str, message_id: str, payload: dict[str, Any]) -> None:
        if self._wired():
            await notice.notify(self._require()[0].tenant_id, event_type, message_id, payload)

    async def _notify_canceled(self, reason: str) -> None:
        inp, c = self._require()
        await self._notify(
            notice.SUBSCRIPTION_CANCELED,
            f"{notice.SUBSCRIPTION_CANCELED}:{inp.subscription_id}",
            {
                "subscription_id": inp.subscription_id,
                "canceled_at": c.canceled_at,
                "reason": reason,
            },
        )

    def _settled(self, invoice_id: str) -> None:
        c = self._require()[1]
        remaining = [i for i in c.open_invoices if i.invoice_id != invoice_id]
        status = c.status
        if not remaining and status == Status.PAST_DUE.value:
            status = Status.ACTIVE.value
        # Paid before the cancel for non-payment came due: the subscription goes on.
        cancel_due_at = c.cancel_due_at if remaining else None
        self._c = replace(c, open_invoices=remaining, status=status, cancel_due_at=cancel_due_at)

    async def _project_invoice(
        self,
        invoice_id: str,
        status: str,
        stripe_invoice: StripeInvoiceResult,
        *,
        attempt: int = 0,
        outcome: str | None = None,
        decline_code: str | None = None,
        failure_message: str | None = None,
    ) -> None:
        inp, c = self._require()
        self._c = replace(c, invoice_version=c.invoice_version + 1)
        now = workflow.now()
        await call(
            refs.PROJECT_INVOICE,
            InvoiceProjection(
                invoice_id=invoice_id,
                version=self._c.invoice_version,
                status=status,
                amount_paid=stripe_invoice.amount_paid,
                stripe_invoice_id=stripe_invoice.stripe_invoice_id,
                hosted_invoice_url=stripe_invoice.hosted_invoice_url,
                invoice_pdf=stripe_invoice.invoice_pdf,
                attempt_count=attempt,
                paid_at=now.isoformat() if status == "paid" else None,
                attempt_outcome=outcome,
                decline_code=decline_code,
                failure_message=failure_message,
                attempted_at=now.isoformat() if outcome else None,
                tenant_id=inp.tenant_id,
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DB_RETRY,
            summary=f"project invoice {status}",
        )

    async def _overage(
        self, period: tuple[datetime, datetime], plan: PlanSnapshot
    ) -> tuple[Line, ...]:
        """Overage of the period's usage so far, in arrears, priced by the usage side's
        `compute_period_overage` (period counters plus the tenant's entitlement overrides)."""
        inp = self._require()[0]
        result: PeriodOverageResult = await call(
            refs.COMPUTE_PERIOD_OVERAGE,
            PeriodOverageInput(inp.tenant_id, period[0].isoformat(), plan.definition),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DB_RETRY,
            summary="close period: price usage overage",
        )
        return tuple(
            Line(
                LineKind.OVERAGE,
                line.description,
                line.amount,
                metric=line.metric,
                quantity=line.used,
                period_start=period[0],
                period_end=period[1],
            )
            for line in result.lines
            if line.amount
        )

    # ------------------------------------------------------------------------------ pricing

    def _proration_instant(self, proration_date: str | None) -> datetime:
        at = _dt(proration_date)
        now = self._business_now()
        return now if at is None else at

    def _price_change(
        self, new_snapshot: PlanSnapshot, timing: str, proration_date: str | None
    ) -> tuple[str, bool, datetime, InvoiceDraft | None]:
        """(kind, immediate, instant, the invoice the change issues now) for a plan change."""
        c = self._require()[1]
        priced = price_change(
            status=c.status,
            current=_plan(c.plan),
            new=_plan(new_snapshot),
            interval=self._interval(),
            timing=timing,
            at=self._proration_instant(proration_date),
            period=self._period() if c.anchor else None,
            credit_balance=c.credit_balance,
        )
        return priced.kind.value, priced.immediate, priced.effective_at, priced.invoice

    def _next_invoice(
        self, plan_after: PlanSnapshot, credit_balance: int
    ) -> tuple[datetime | None, InvoiceDraft | None]:
        """The next renewal invoice with zero usage so far (overage is only known at close)."""
        c = self._require()[1]
        return next_invoice(
            status=c.status,
            plan=_plan(plan_after),
            interval=self._interval(),
            trial_end=_dt(c.trial_end),
            anchor=_dt(c.anchor),
            period_index=c.period_index,
            cancel_at_period_end=c.cancel_at_period_end,
            credit_balance=credit_balance,
        )

    # ------------------------------------------------------------------------------ updates

    @workflow.update(name="change_plan")
    async def change_plan(self, request: ChangePlanRequest) -> ChangePlanResult:
        async with self._lock:
            # The state may have moved while this update waited for the lock.
            self._recheck(self._validate_change, request)
            inp, c = self._require()
            kind, immediate, at, draft = self._price_change(
                request.plan, request.timing, request.proration_date
            )
            from_plan = c.plan.code
            invoice_id = None
            if not immediate:
                self._c = replace(c, pending_plan=request.plan)
                await self._record_change(
                    "plan_change_scheduled",
                    request.actor,
                    c.status,
                    at,
                    from_plan=from_plan,
                    to_plan=request.plan.code,
                )
            else:
                self._c = replace(c, plan=request.plan, pending_plan=None)
                if draft is not None:
                    self._c = replace(self._c, change_seq=self._c.change_seq + 1)
                    invoice_id = await self._issue(
                        draft,
                        "subscription_update",
                        f"change:{self._c.change_seq}:{at.isoformat()}",
                        (at, self._period()[1]),
                    )
                await self._record_change(
                    "plan_changed",
                    request.actor,
                    c.status,
                    at,
                    from_plan=from_plan,
                    to_plan=request.plan.code,
                    details={"kind": kind, "invoice_id": invoice_id},
                )
            await self._project()
            self._generation += 1
            c2 = self._require()[1]
            return ChangePlanResult(
                subscription_id=inp.subscription_id,
                kind=kind,
                effective_at=at.isoformat(),
                scheduled=not immediate,
                lines=[_payload(line) for line in draft.lines] if draft else [],
                invoice_id=invoice_id,
                invoice_total=draft.total if draft else 0,
                credit_balance=c2.credit_balance,
                status=c2.status,
            )

    @change_plan.validator
    @domain_errors
    def validate_change_plan(self, request: ChangePlanRequest) -> None:
        self._validate_change(request)

    def _validate_change(self, request: ChangePlanRequest, *, now: datetime | None = None) -> None:
        c = self._require()[1]
        _check_apply_before(request.apply_before)
        check_command(Command.CHANGE_PLAN, self._facts())
        if request.timing not in ("default", "immediate", "period_end"):
            raise InvalidTransition(f"unknown timing {request.timing!r}")
        new_plan = _plan(request.plan)
        if request.plan.code == c.plan.code and request.plan.version == c.plan.version:
            raise InvalidTransition(f"the subscription is already on {request.plan.code}")
        if new_plan.currency != _plan(c.plan).currency:
            raise InvalidTransition("a plan change cannot switch currency")
        self._check_proration_date(request.proration_date, now=now)

    def _check_proration_date(
        self, proration_date: str | None, *, now: datetime | None = None
    ) -> None:
        at = _dt(proration_date)
        if at is None:
            return
        c = self._require()[1]
        if c.anchor is None:
            return
        start, end = self._period()
        current = now or self._business_now()
        if not start <= at <= min(end, current):
            raise InvalidTransition(
                "proration_date must lie in the current period and not in the future"
            )
        # A preview is good for an hour of the caller's time: an older instant would backdate
        # the change (a larger credit for an immediate downgrade). Validators do not run on
        # replay, so this bound leaves recorded histories as they are (ADR 0007).
        if at < current - PRORATION_DATE_MAX_AGE * self._require()[0].time_scale:
            raise InvalidTransition(
                "proration_date is more than an hour old: preview the change again"
            )

    @workflow.update(name="cancel")
    async def cancel(self, request: CancelRequest) -> LifecycleResult:
        async with self._lock:
            # The state may have moved while this update waited for the lock.
            self._recheck(self._validate_cancel, request)
            inp, c = self._require()
            now = self._business_now()
            invoice_id = None
            total = 0
            if request.at_period_end:
                self._c = replace(c, cancel_at_period_end=True)
                effective = self._period()[1] if c.anchor else now
                await self._record_change("cancel_scheduled", request.actor, c.status, now)
            else:
                effective = now
                if c.anchor is not None and c.status != Status.PAUSED.value:
                    # Final invoice: usage of the period so far, in arrears. Unused base time
                    # is not refunded (ADR 0002).
                    start, _ = self._period()
                    plan = _plan(c.plan)
                    draft = compose_invoice(
                        plan.currency, await self._overage((start, now), c.plan), c.credit_balance
                    )
                    invoice_id = await self._issue(
                        draft, "final", f"final:{start.isoformat()}", (start, now)
                    )
                    total = draft.total
                self._c = replace(
                    self._require()[1],
                    status=Status.CANCELED.value,
                    canceled_at=now.isoformat(),
                    cancel_at_period_end=False,
                    pending_plan=None,
                )
                await self._record_change("canceled", request.actor, c.status, now)
            await self._project()
            if self._require()[1].status == Status.CANCELED.value:
                await self._notify_canceled("requested")
            self._generation += 1
            c2 = self._require()[1]
            return LifecycleResult(
                inp.subscription_id,
                c2.status,
                c2.cancel_at_period_end,
                effective.isoformat(),
                invoice_id,
                total,
            )

    @cancel.validator
    @domain_errors
    def _validate_cancel(self, request: CancelRequest) -> None:
        _check_apply_before(request.apply_before)
        check_cancel(self._facts(), at_period_end=request.at_period_end)

    @workflow.update(name="undo_cancel")
    async def undo_cancel(self, request: LifecycleRequest) -> LifecycleResult:
        async with self._lock:
            # The state may have moved while this update waited for the lock.
            self._recheck(self._validate_undo_cancel, request)
            inp, c = self._require()
            self._c = replace(c, cancel_at_period_end=False)
            now = self._business_now()
            await self._record_change("cancel_undone", request.actor, c.status, now)
            await self._project()
            self._generation += 1
            return LifecycleResult(inp.subscription_id, c.status, False, now.isoformat())

    @undo_cancel.validator
    @domain_errors
    def _validate_undo_cancel(self, request: LifecycleRequest) -> None:
        _check_apply_before(request.apply_before)
        check_command(Command.UNDO_CANCEL, self._facts())

    @workflow.update(name="pause")
    async def pause(self, request: PauseRequest) -> LifecycleResult:
        async with self._lock:
            # The state may have moved while this update waited for the lock.
            self._recheck(self._validate_pause, request)
            inp, c = self._require()
            now = self._business_now()
            # Pausing closes the period now: usage so far is billed, unused base time becomes
            # credit; resuming opens a fresh period anchored at the resume instant.
            start, end = self._period()
            plan = _plan(c.plan)
            lines = [
                *await self._overage((start, now), c.plan),
                *proration_lines(plan, plan, self._interval(), (start, end), now)[:1],
            ]
            draft = compose_invoice(plan.currency, lines, c.credit_balance)
            invoice_id = await self._issue(draft, "pause", f"pause:{now.isoformat()}", (start, now))
            self._c = replace(
                self._require()[1],
                status=Status.PAUSED.value,
                paused_at=now.isoformat(),
                resume_at=request.resume_at,
                pending_plan=None,
            )
            await self._record_change(
                "paused", request.actor, c.status, now, details={"resume_at": request.resume_at}
            )
            await self._project()
            self._generation += 1
            return LifecycleResult(
                inp.subscription_id,
                Status.PAUSED.value,
                False,
                now.isoformat(),
                invoice_id,
                draft.total,
            )

    @pause.validator
    @domain_errors
    def _validate_pause(self, request: PauseRequest) -> None:
        _check_apply_before(request.apply_before)
        check_command(Command.PAUSE, self._facts())
        resume_at = _dt(request.resume_at)
        if resume_at is not None and resume_at <= self._business_now():
            raise InvalidTransition("resume_at must be in the future")

    @workflow.update(name="resume")
    async def resume(self, request: LifecycleRequest) -> LifecycleResult:
        async with self._lock:
            # The state may have moved while this update waited for the lock.
            self._recheck(self._validate_resume, request)
            inp = self._require()[0]
            now = self._business_now()
            await self._activate(now, request.actor, Status.PAUSED.value, "resumed")
            self._publish()
            self._generation += 1
            c = self._require()[1]
            return LifecycleResult(inp.subscription_id, c.status, False, now.isoformat())

    @resume.validator
    @domain_errors
    def _validate_resume(self, request: LifecycleRequest) -> None:
        _check_apply_before(request.apply_before)
        check_command(Command.RESUME, self._facts())

    @workflow.update(name="set_payment_method")
    async def set_payment_method(self, request: SetPaymentMethodRequest) -> PaymentMethodResult:
        async with self._lock:
            # The state may have moved while this update waited for the lock.
            self._recheck(self._validate_payment_method, request)
            card = await self._attach_payment_method(request.payment_method_id)
            c = self._require()[1]
            await self._record_change(
                "payment_method_set",
                request.actor,
                c.status,
                self._business_now(),
                details={"brand": card.brand, "last4": card.last4},
            )
            # A new card is the moment to retry what is owed: invoices under dunning are retried
            # by their child (the only writer of their rows), the others here.
            for invoice in list(c.open_invoices):
                if invoice.invoice_id in c.dunning_invoice_ids:
                    await self._signal_dunning(
                        invoice.invoice_id,
                        "payment_method_updated",
                        PaymentMethodUpdated(
                            f"sub:{self._require()[0].subscription_id}:change:{c.change_seq}",
                            request.payment_method_id,
                        ),
                    )
                else:
                    await self._collect(invoice)
            await self._project()
            self._generation += 1
            return card

    @set_payment_method.validator
    @domain_errors
    def _validate_payment_method(self, request: SetPaymentMethodRequest) -> None:
        _check_apply_before(request.apply_before)
        if self._require()[1].customer_id is None:
            raise InvalidTransition("the subscription is still being set up; retry in a moment")
        check_command(Command.SET_PAYMENT_METHOD, self._facts())
        if not request.payment_method_id.strip():
            raise InvalidTransition("payment_method_id is empty")

    async def _attach_payment_method(self, payment_method_id: str) -> PaymentMethodResult:
        inp, c = self._require()
        assert c.customer_id is not None
        card: PaymentMethodResult = await call(
            refs.ATTACH_PAYMENT_METHOD,
            AttachPaymentMethodInput(inp.tenant_id, c.customer_id, payment_method_id),
            task_queue=inp.stripe_task_queue,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            schedule_to_close_timeout=STRIPE_WRITE_SCHEDULE_TO_CLOSE,
            retry_policy=STRIPE_RETRY,
            summary="attach payment method",
        )
        await call(
            refs.RECORD_PAYMENT_METHOD,
            RecordPaymentMethodInput(inp.tenant_id, card),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DB_RETRY,
            summary="record payment method",
        )
        self._c = replace(self._require()[1], has_payment_method=True)
        if self._wired():
            # The warning timer follows the card on file: a new card replaces it.
            notice_at = card_expires_at(card.exp_year, card.exp_month) - CARD_EXPIRING_NOTICE
            self._c = replace(
                self._c,
                card=card,
                card_expiring_notice_at=max(notice_at, self._business_now()).isoformat(),
            )
        return card

    # ------------------------------------------------------------------------------ signals

    @workflow.signal(name="stripe_event")
    async def stripe_event(self, event: StripeEventSignal) -> None:
        async with self._lock:
            c = self._require()[1]
            if event.event_id in c.seen_event_ids:
                return
            self._c = replace(
                c, seen_event_ids=[*c.seen_event_ids, event.event_id][-SEEN_EVENTS_KEPT:]
            )
            if event.event_type in PAYMENT_METHOD_EVENTS:
                self._c = replace(self._c, has_payment_method=True)
                await self._forward_card_update(event.event_id, event.stripe_payment_method_id)
                return
            invoice = next(
                (
                    i
                    for i in self._c.open_invoices
                    if (event.invoice_id and i.invoice_id == event.invoice_id)
                    or (event.stripe_invoice_id and i.stripe_invoice_id == event.stripe_invoice_id)
                ),
                None,
            )
            if invoice is None:
                return  # not open here: already settled (a late failure changes nothing)
            if invoice.invoice_id in self._c.dunning_invoice_ids:
                # The child owns the invoice while it chases it: it re-reads Stripe and stops;
                # its `dunning_finished` brings the outcome here.
                if event.event_type in PAID_EVENTS or event.invoice_status == "paid":
                    await self._signal_dunning(
                        invoice.invoice_id, "invoice_paid", InvoicePaid(event.event_id)
                    )
                return
            before = self._c.status
            if event.event_type in PAID_EVENTS or event.invoice_status == "paid":
                await self._project_invoice(
                    invoice.invoice_id,
                    "paid",
                    StripeInvoiceResult(
                        invoice.stripe_invoice_id or "",
                        "paid",
                        invoice.total,
                        event.amount_paid if event.amount_paid is not None else invoice.total,
                        event.hosted_invoice_url,
                        None,
                    ),
                    attempt=invoice.attempts,
                )
                self._settled(invoice.invoice_id)
                if invoice.attempts > 0:  # a failed collection opened its grace window
                    await self._close_payment_grace(invoice.invoice_id, "paid")
                await self._notify(
                    notice.INVOICE_PAID,
                    f"{notice.INVOICE_PAID}:{invoice.invoice_id}",
                    {
                        "invoice_id": invoice.invoice_id,
                        "amount_paid": event.amount_paid
                        if event.amount_paid is not None
                        else invoice.total,
                        "currency": _plan(self._c.plan).currency,
                    },
                )
            elif event.event_type in FAILED_EVENTS and self._c.status == Status.ACTIVE.value:
                self._c = replace(self._c, status=Status.PAST_DUE.value)
            if self._c.status != before:
                await self._record_change(
                    "payment_status", "stripe", before, self._business_now(),
                    details={"event_id": event.event_id, "invoice_id": invoice.invoice_id},
                )  # fmt: skip
                await self._project()

    # ------------------------------------------------------------------------------ queries

    @workflow.query(name="state")
    def state(self) -> SubscriptionState:
        inp, c = self._require()
        period = self._period() if c.anchor else None
        return SubscriptionState(
            subscription_id=inp.subscription_id,
            tenant_id=inp.tenant_id,
            status=c.status,
            plan_code=c.plan.code,
            interval=inp.interval,
            stripe_customer_id=c.customer_id,
            current_period_start=_iso(period[0]) if period else None,
            current_period_end=_iso(period[1]) if period else None,
            trial_end=c.trial_end,
            version=c.version,
            cancel_at_period_end=c.cancel_at_period_end,
            pending_plan_code=c.pending_plan.code if c.pending_plan else None,
            credit_balance=c.credit_balance,
            open_invoices=list(c.open_invoices),
            invoices_issued=c.invoices_issued,
            dunning_invoice_ids=list(c.dunning_invoice_ids),
            cancel_due_at=c.cancel_due_at,
            paused_at=c.paused_at,
            resume_at=c.resume_at,
            has_payment_method=c.has_payment_method,
            business_now=self._business_now().isoformat(),
        )

    @workflow.query(name="preview")
    def preview(self, request: PreviewRequest) -> PreviewResult:
        """What a change would bill now and at the next renewal; without a plan, the upcoming
        invoice as things stand."""
        c = self._require()[1]
        currency = _plan(c.plan).currency
        # A query sees the time of the last workflow task, which can be long ago: the caller
        # says what time it is (`as_of`, wall clock) and the workflow maps it onto its clock.
        as_of = _dt(request.as_of)
        at = _dt(request.proration_date) or (
            self._business_at(as_of) if as_of else self._business_now()
        )
        at = at.replace(microsecond=0)
        if request.plan is None:
            after = c.pending_plan or c.plan
            next_at, next_draft = self._next_invoice(after, c.credit_balance)
            return PreviewResult(
                kind="none",
                effective_at=at.isoformat(),
                proration_date=at.isoformat(),
                lines=[],
                total=0,
                credit_balance_after=c.credit_balance,
                next_invoice_at=_iso(next_at),
                next_invoice_lines=[_payload(x) for x in next_draft.lines] if next_draft else [],
                next_invoice_total=next_draft.total if next_draft else 0,
                currency=currency,
            )
        self._validate_change(ChangePlanRequest(request.plan, "preview", request.timing), now=at)
        self._check_proration_date(request.proration_date, now=at)
        kind, immediate, effective, draft = self._price_change(
            request.plan, request.timing, at.isoformat()
        )
        balance = draft.credit_balance_after if draft else c.credit_balance
        next_at, next_draft = self._next_invoice(request.plan, balance)
        return PreviewResult(
            kind=kind,
            effective_at=effective.isoformat(),
            proration_date=at.isoformat(),
            lines=[_payload(x) for x in draft.lines] if draft else [],
            total=draft.total if draft else 0,
            credit_balance_after=balance,
            next_invoice_at=_iso(next_at),
            next_invoice_lines=[_payload(x) for x in next_draft.lines] if next_draft else [],
            next_invoice_total=next_draft.total if next_draft else 0,
            currency=currency,
        )

    # ------------------------------------------------------------------------------ plumbing

    def _recheck(self, validator: Callable[[Any], None], request: Any) -> None:
        """Validate again inside the handler. A refusal here must be an ApplicationError (any
        other exception would fail the workflow task and retry it forever); the deadline is not
        checked again: the update was accepted in time."""
        # The undecorated check (not `domain_errors`' wrapper): a refusal inside the handler
        # keeps the failure type recorded histories carry.
        inner = getattr(getattr(validator, "__func__", None), "__wrapped__", None)
        check = inner.__get__(getattr(validator, "__self__", None)) if inner else validator
        try:
            check(replace(request, apply_before=None))
        except InvalidTransition as error:
            raise ApplicationError(
                error.message, type="InvalidTransition", non_retryable=True
            ) from error

    def _moved_since(self, generation: int) -> Callable[[], bool]:
        return lambda: self._generation != generation

    def _require(self) -> tuple[SubscriptionInput, SubscriptionCarry]:
        assert self._input is not None
        assert self._c is not None
        return self._input, self._c

    def _facts(self) -> LifecycleFacts:
        c = self._require()[1]
        return LifecycleFacts(Status(c.status), cancel_at_period_end=c.cancel_at_period_end)

    def _interval(self) -> Interval:
        return Interval(self._require()[0].interval)

    def _period(self) -> tuple[datetime, datetime]:
        c = self._require()[1]
        anchor = _dt(c.anchor)
        assert anchor is not None
        return period_bounds(anchor, self._interval(), c.period_index)

    def _trial_period(self) -> tuple[datetime, datetime] | None:
        """While trialing, the trial is the open billing period (as in Stripe): usage is metered
        and quotas apply against it."""
        inp, c = self._require()
        trial_end = _dt(c.trial_end)
        if c.status != Status.TRIALING.value or trial_end is None:
            return None
        trial_days = inp.trial_days if inp.trial_days is not None else _plan(inp.plan).trial_days
        return trial_end - timedelta(days=trial_days), trial_end

    def _business_now(self) -> datetime:
        return self._business_at(workflow.now())

    def _clock(self) -> BusinessClock:
        inp, c = self._require()
        return BusinessClock(
            datetime.fromisoformat(c.wall_origin),
            datetime.fromisoformat(c.business_origin),
            inp.time_scale,
        )

    def _business_at(self, wall: datetime) -> datetime:
        return self._clock().business_at(wall)

    def _wall_until(self, deadline: datetime) -> timedelta:
        inp = self._require()[0]
        remaining = deadline - self._business_now()
        if inp.time_scale == 1.0:
            return remaining
        return remaining / inp.time_scale

    async def _record_change(
        self,
        kind: str,
        actor: str,
        from_status: str | None,
        at: datetime,
        *,
        from_plan: str | None = None,
        to_plan: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        inp, c = self._require()
        self._c = replace(c, change_seq=c.change_seq + 1)
        await call(
            refs.RECORD_SUBSCRIPTION_CHANGE,
            SubscriptionChange(
                tenant_id=inp.tenant_id,
                subscription_id=inp.subscription_id,
                # Deterministic: a retried activity (or a replay) records the change once.
                change_key=f"sub:{inp.subscription_id}:change:{self._c.change_seq}",
                kind=kind,
                effective_at=at.isoformat(),
                actor=actor,
                from_status=from_status,
                to_status=self._c.status,
                from_plan_code=from_plan,
                to_plan_code=to_plan,
                details=details or {},
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DB_RETRY,
            summary=f"record change {kind}",
        )

    async def _project(self) -> None:
        # The UI's view (search attributes, details) moves with the Postgres projection.
        self._publish()
        inp, c = self._require()
        self._c = replace(c, version=c.version + 1)
        c = self._c
        period = self._period() if c.anchor else self._trial_period()
        await call(
            refs.PROJECT_SUBSCRIPTION,
            SubscriptionProjection(
                subscription_id=inp.subscription_id,
                tenant_id=inp.tenant_id,
                version=c.version,
                status=c.status,
                plan_id=c.plan.plan_id,
                plan_code=c.plan.code,
                interval=inp.interval,
                current_period_start=_iso(period[0]) if period else None,
                current_period_end=_iso(period[1]) if period else None,
                trial_end=c.trial_end,
                cancel_at_period_end=c.cancel_at_period_end,
                canceled_at=c.canceled_at,
                paused_at=c.paused_at,
                resume_at=c.resume_at,
                pending_change=(
                    {"plan_code": c.pending_plan.code, "plan_id": c.pending_plan.plan_id}
                    if c.pending_plan
                    else None
                ),
                # Payload only (ADR 0007): the usage path reads the workflow's clock.
                clock_wall_origin=c.wall_origin,
                clock_business_origin=c.business_origin,
                time_scale=inp.time_scale,
            ),
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DB_RETRY,
            summary=f"project status {c.status}",
        )

    def _publish(self) -> None:
        inp, c = self._require()
        # The UI shows the billing clock; notices are timers of their own.
        next_at = self._next_billing_deadline()
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.TENANT_ID.value_set(inp.tenant_id),
            sa.SUBSCRIPTION_ID.value_set(inp.subscription_id),
            sa.PLAN_CODE.value_set(c.plan.code),
            sa.SUBSCRIPTION_STATUS.value_set(c.status),
            sa.NEXT_BILLING_AT.value_set(next_at) if next_at else sa.NEXT_BILLING_AT.value_unset(),
        ]
        workflow.upsert_search_attributes(updates)
        pending = " (cancels at period end)" if c.cancel_at_period_end else ""
        workflow.set_current_details(
            f"{c.status}{pending} on {c.plan.code}/{inp.interval}"
            + (
                f", next {self._deadline_summary(billing_only=True)} at {next_at.isoformat()}"
                if next_at
                else ""
            )
        )
