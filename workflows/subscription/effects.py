"""The subscription machine's interpreter: it owns the typed state, steps `billing.subscription`
with each event and carries the effects out, in order, as activity calls, child workflows,
signals and search attributes. An effect that yields an outcome (an invoice opened, a collection
paid or failed) steps the machine again at once; `Then` steps it after the effects before it.

Every call here schedules what the workflow scheduled before the machine existed, in the same
order, so recorded histories replay unchanged (ADR 0009)."""

from __future__ import annotations

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
    import billing.subscription as m
    import workflows.activity_refs as refs
    import workflows.notify as notice
    import workflows.search_attributes as sa
    import workflows.subscription.carry as carry
    from billing.invoicing import InvoiceDraft, Line
    from workflows.activity_refs import call
    from workflows.dunning import DunningWorkflow, dunning_workflow_id
    from workflows.dunning_io import DunningInput, InvoicePaid, PaymentMethodUpdated
    from workflows.payment_grace import resolve_payment_grace, start_payment_grace
    from workflows.retry import DB_RETRY, STRIPE_RETRY, STRIPE_WRITE_SCHEDULE_TO_CLOSE
    from workflows.shared_io import InvoiceProjection, StripeInvoiceRead
    from workflows.subscription_io import (
        AttachPaymentMethodInput,
        CollectInvoiceInput,
        CollectInvoiceResult,
        CreateStripeInvoiceInput,
        EnsureCustomerInput,
        PaymentMethodResult,
        PeriodOverageInput,
        RecordCustomerInput,
        RecordInvoiceInput,
        RecordPaymentMethodInput,
        SubscriptionChange,
        SubscriptionInput,
        SubscriptionProjection,
    )

ACTIVITY_TIMEOUT = timedelta(seconds=30)


def _db(summary: str) -> dict[str, Any]:
    """The option set of a Postgres activity."""
    return {
        "start_to_close_timeout": ACTIVITY_TIMEOUT,
        "retry_policy": DB_RETRY,
        "summary": summary,
    }


def _stripe(inp: SubscriptionInput, summary: str) -> dict[str, Any]:
    """The option set of a Stripe write: on the rate-limited queue, within the key's life."""
    return {
        "task_queue": inp.stripe_task_queue,
        "start_to_close_timeout": ACTIVITY_TIMEOUT,
        "schedule_to_close_timeout": STRIPE_WRITE_SCHEDULE_TO_CLOSE,
        "retry_policy": STRIPE_RETRY,
        "summary": summary,
    }


class Interpreter:
    def __init__(self, inp: SubscriptionInput, state: m.SubscriptionState) -> None:
        self.input = inp
        self.state = state
        self.issued: str | None = None  # the invoice the last `handle` issued
        self.continue_as_new = False

    def business_now(self) -> datetime:
        return self.state.clock.business_at(workflow.now())

    async def handle(self, event: m.Event) -> list[m.Effect]:
        """Step the machine with `event` at the current business instant and carry out what it
        decides; returns the effects of that step (its `Outcome` among them)."""
        self.issued = None
        now = self.business_now()
        window = m.usage_window(self.state, event, now)
        if window is not None:
            assert isinstance(event, m.DeadlineReached | m.Cancel | m.Pause)
            event = replace(event, usage=await self._overage(window))
        return await self._step(event, now)

    async def _step(self, event: m.Event, now: datetime) -> list[m.Effect]:
        self.state, effects = m.step(self.state, event, now)
        for effect in effects:
            follow = await self._run(effect)
            if follow is not None:
                await self._step(follow, self.business_now())
        return effects

    async def start(self) -> None:
        inp = self.input
        customer = await call(
            refs.ENSURE_STRIPE_CUSTOMER,
            EnsureCustomerInput(
                inp.tenant_id, inp.tenant_name, inp.tenant_email, inp.stripe_customer_id
            ),
            **_stripe(inp, "ensure Stripe customer"),
        )
        await call(
            refs.RECORD_STRIPE_CUSTOMER,
            RecordCustomerInput(inp.tenant_id, customer.customer_id),
            **_db("record Stripe customer"),
        )
        await self.handle(m.CustomerCreated(customer.customer_id))
        if inp.payment_method_id:
            try:
                card = await self.attach_card(inp.payment_method_id)
            except ActivityError as error:
                # A card refused at sign-up must not kill the subscription: it starts without
                # one (the trial-end policy or a failed first collection handles the rest).
                workflow.logger.warning("payment method not attached: %s", error.cause)
            else:
                await self.handle(m.PaymentMethodSet(carry.card_in(card)))
        await self.handle(m.SignedUp(inp.actor))

    async def attach_card(self, payment_method_id: str) -> PaymentMethodResult:
        inp, customer_id = self.input, self.state.customer_id
        assert customer_id is not None
        card = await call(
            refs.ATTACH_PAYMENT_METHOD,
            AttachPaymentMethodInput(inp.tenant_id, customer_id, payment_method_id),
            **_stripe(inp, "attach payment method"),
        )
        await call(
            refs.RECORD_PAYMENT_METHOD,
            RecordPaymentMethodInput(inp.tenant_id, card),
            **_db("record payment method"),
        )
        return card

    async def _overage(self, window: tuple[datetime, datetime]) -> tuple[Line, ...]:
        """Overage of the window's usage so far, priced by the usage side (period counters plus
        the tenant's entitlement overrides)."""
        result = await call(
            refs.COMPUTE_PERIOD_OVERAGE,
            PeriodOverageInput(
                self.input.tenant_id,
                window[0].isoformat(),
                carry.plan_out(self.state.plan).definition,
            ),
            **_db("close period: price usage overage"),
        )
        return carry.overage_in(result, window)

    def _bump(self, **counters: int) -> m.SubscriptionState:
        s = self.state
        self.state = replace(s, **{k: getattr(s, k) + v for k, v in counters.items()})
        return self.state

    async def _run(self, effect: m.Effect) -> m.Event | None:  # noqa: C901 - one case per effect
        inp, s = self.input, self.state
        match effect:
            case m.IssueInvoice(draft=draft, reason=reason, key=key, period=period):
                return await self._issue(draft, reason, key, period)
            case m.Collect():
                return await self._collect(effect)
            case m.ProjectInvoice():
                await self._project_invoice(effect)
            case m.RecordChange():
                await self._record_change(effect)
            case m.Project():
                await self._project()
            case m.Publish():
                publish(inp, s)
            case m.Notify(event_type=kind, message_id=message_id, payload=payload):
                if s.terms.notices:
                    await notice.notify(inp.tenant_id, kind, message_id, dict(payload))
            case m.StartDunning():
                await self._start_dunning(effect)
            case m.ForwardCardUpdate(invoice_id=invoice_id):
                update = PaymentMethodUpdated(effect.event_id, effect.payment_method_id)
                await _signal_dunning(invoice_id, "payment_method_updated", update)
            case m.ForwardPayment(invoice_id=invoice_id, event_id=event_id):
                await _signal_dunning(invoice_id, "invoice_paid", InvoicePaid(event_id))
            case m.OpenGrace(invoice_id=invoice_id):
                grace = inp.payment_grace_days * 86_400
                await start_payment_grace(
                    inp.tenant_id, invoice_id, grace, time_scale=inp.time_scale
                )
            case m.CloseGrace(invoice_id=invoice_id, resolution=resolution):
                # "paid" lifts a suspension the window caused; "voided"/"canceled" close it and
                # keep the suspension (ADR 0006). A no-op when no window is open.
                actor = f"workflow:{workflow.info().workflow_id}"
                await resolve_payment_grace(inp.tenant_id, invoice_id, resolution, actor)
            case m.Then(event=event):
                return event
            case m.ContinueAsNew():
                self.continue_as_new = True
            case m.Outcome():
                pass
        return None

    async def _issue(
        self, draft: InvoiceDraft, reason: str, key: str, period: tuple[datetime, datetime]
    ) -> m.InvoiceOpened:
        """Write the invoice, then mirror it to Stripe (the machine then projects and
        collects it)."""
        inp = self.input
        invoice_id = str(workflow.uuid4())
        lines = [carry.line_out(line) for line in draft.lines]
        s = self._bump(invoice_version=1)
        await call(
            refs.RECORD_INVOICE,
            RecordInvoiceInput(
                invoice_id=invoice_id,
                tenant_id=inp.tenant_id,
                subscription_id=inp.subscription_id,
                billing_key=f"sub:{inp.subscription_id}:{key}",
                billing_reason=reason,
                currency=draft.currency,
                subtotal=draft.subtotal,
                total=draft.total,
                lines=lines,
                period_start=period[0].isoformat(),
                period_end=period[1].isoformat(),
                version=s.invoice_version,
            ),
            **_db(f"record invoice ({reason})"),
        )
        assert s.customer_id is not None
        stripe_invoice = await call(
            refs.CREATE_STRIPE_INVOICE,
            CreateStripeInvoiceInput(
                invoice_id=invoice_id,
                customer_id=s.customer_id,
                currency=draft.currency,
                lines=lines,
                tenant_id=inp.tenant_id,
                subscription_id=inp.subscription_id,
            ),
            **_stripe(inp, "mirror invoice to Stripe"),
        )
        self.issued = invoice_id
        return m.InvoiceOpened(invoice_id, draft.total, carry.receipt_in(stripe_invoice))

    async def _collect(self, effect: m.Collect) -> m.InvoicePaid | m.CollectionFailed:
        try:
            result = await call(
                refs.COLLECT_INVOICE,
                CollectInvoiceInput(effect.invoice_id, effect.stripe_invoice_id, effect.attempt),
                **_stripe(self.input, f"collect invoice (attempt {effect.attempt})"),
            )
        except ActivityError as error:
            cause = error.cause
            if (
                not isinstance(cause, ApplicationError)
                or cause.type != "stripe_payment_method_missing"
            ):
                raise
            # No card on file is a failed collection, not a broken workflow.
            unpaid = StripeInvoiceRead(
                effect.stripe_invoice_id, "open", effect.total, 0, None, None
            )
            result = CollectInvoiceResult("no_payment_method", unpaid, None, cause.message)
        paid = result.outcome in ("paid", "already_paid")
        outcome = m.InvoicePaid if paid else m.CollectionFailed
        return outcome(
            effect.invoice_id,
            effect.attempt,
            effect.total,
            carry.receipt_in(result.invoice),
            result.outcome,
            result.decline_code,
            result.failure_message,
        )

    async def _project_invoice(self, effect: m.ProjectInvoice) -> None:
        s = self._bump(invoice_version=1)
        now, receipt = workflow.now(), effect.receipt
        await call(
            refs.PROJECT_INVOICE,
            InvoiceProjection(
                invoice_id=effect.invoice_id,
                version=s.invoice_version,
                status=effect.status,
                amount_paid=receipt.amount_paid,
                stripe_invoice_id=receipt.stripe_invoice_id,
                hosted_invoice_url=receipt.hosted_invoice_url,
                invoice_pdf=receipt.invoice_pdf,
                attempt_count=effect.attempt,
                paid_at=now.isoformat() if effect.status == "paid" else None,
                attempt_outcome=effect.outcome,
                decline_code=effect.decline_code,
                failure_message=effect.failure_message,
                attempted_at=now.isoformat() if effect.outcome else None,
                tenant_id=self.input.tenant_id,
            ),
            **_db(f"project invoice {effect.status}"),
        )

    async def _record_change(self, effect: m.RecordChange) -> None:
        inp = self.input
        s = self._bump(change_seq=1)
        details = dict(effect.details)
        if effect.with_invoice:
            details["invoice_id"] = self.issued
        await call(
            refs.RECORD_SUBSCRIPTION_CHANGE,
            SubscriptionChange(
                tenant_id=inp.tenant_id,
                subscription_id=inp.subscription_id,
                # Deterministic: a retried activity (or a replay) records the change once.
                change_key=f"sub:{inp.subscription_id}:change:{s.change_seq}",
                kind=effect.kind,
                effective_at=effect.at.isoformat(),
                actor=effect.actor,
                from_status=effect.from_status.value,
                to_status=s.status.value,
                from_plan_code=effect.from_plan,
                to_plan_code=effect.to_plan,
                details=details,
            ),
            **_db(f"record change {effect.kind}"),
        )

    async def _project(self) -> None:
        # The UI's view (search attributes, details) moves with the Postgres projection.
        publish(self.input, self.state)
        inp, s = self.input, self._bump(version=1)
        period = s.open_period()
        await call(
            refs.PROJECT_SUBSCRIPTION,
            SubscriptionProjection(
                subscription_id=inp.subscription_id,
                tenant_id=inp.tenant_id,
                version=s.version,
                status=s.status.value,
                plan_id=s.plan.plan_id,
                plan_code=s.plan.code,
                interval=inp.interval,
                current_period_start=carry.iso(period[0]) if period else None,
                current_period_end=carry.iso(period[1]) if period else None,
                trial_end=carry.iso(s.trial_end),
                cancel_at_period_end=s.cancel_at_period_end,
                canceled_at=carry.iso(s.canceled_at),
                paused_at=carry.iso(s.paused_at),
                resume_at=carry.iso(s.resume_at),
                pending_change=(
                    {"plan_code": s.pending_plan.code, "plan_id": s.pending_plan.plan_id}
                    if s.pending_plan
                    else None
                ),
                # Payload only (ADR 0007): the usage path reads the workflow's clock.
                clock_wall_origin=s.clock.wall_origin.isoformat(),
                clock_business_origin=s.clock.business_origin.isoformat(),
                time_scale=inp.time_scale,
            ),
            **_db(f"project status {s.status.value}"),
        )

    async def _start_dunning(self, effect: m.StartDunning) -> None:
        """Hand the unpaid invoice to its `dunning:{invoice_id}` child (ADR 0005). ABANDON: the
        child must outlive this run's continue-as-new; later runs reach it by id."""
        inp = self.input
        try:
            await workflow.start_child_workflow(
                DunningWorkflow.run,
                DunningInput(
                    invoice_id=effect.invoice_id,
                    stripe_invoice_id=effect.stripe_invoice_id,
                    tenant_id=inp.tenant_id,
                    subscription_id=inp.subscription_id,
                    currency=effect.currency,
                    amount_due=effect.amount_due,
                    hosted_invoice_url=effect.hosted_invoice_url,
                    policy=inp.dunning_policy,
                    stripe_task_queue=inp.stripe_task_queue,
                    time_scale=inp.time_scale,
                    first_attempt=effect.first_attempt,
                    invoice_version=self.state.invoice_version,
                ),
                id=dunning_workflow_id(effect.invoice_id),
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"dunning of invoice {effect.invoice_id}",
            )
        except WorkflowAlreadyStartedError:
            pass  # already chasing this invoice: attach to it


async def _signal_dunning(
    invoice_id: str, signal: str, payload: PaymentMethodUpdated | InvoicePaid
) -> None:
    """Forward to the child by id: works from any run, including after continue-as-new."""
    try:
        await workflow.get_external_workflow_handle(dunning_workflow_id(invoice_id)).signal(
            signal, payload
        )
    except FailureError:
        # The child has just finished: its `dunning_finished` is on the way to us.
        workflow.logger.info("dunning of %s did not take %s", invoice_id, signal)


def publish(inp: SubscriptionInput, s: m.SubscriptionState) -> None:
    """The UI's view: search attributes and the current details, showing the billing clock
    (notices are timers of their own)."""
    deadline = m.billing_deadline(s)
    next_at = deadline.at if deadline else None
    updates: list[SearchAttributeUpdate[Any]] = [
        sa.TENANT_ID.value_set(inp.tenant_id),
        sa.SUBSCRIPTION_ID.value_set(inp.subscription_id),
        sa.PLAN_CODE.value_set(s.plan.code),
        sa.SUBSCRIPTION_STATUS.value_set(s.status.value),
        sa.NEXT_BILLING_AT.value_set(next_at) if next_at else sa.NEXT_BILLING_AT.value_unset(),
    ]
    workflow.upsert_search_attributes(updates)
    pending = " (cancels at period end)" if s.cancel_at_period_end else ""
    workflow.set_current_details(
        f"{s.status.value}{pending} on {s.plan.code}/{inp.interval}"
        + (f", next {deadline.kind.value} at {deadline.at.isoformat()}" if deadline else "")
    )
