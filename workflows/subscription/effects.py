"""The subscription machine's interpreter: it owns the typed state, steps `billing.subscription`
with each event and carries the effects out, in order, as activity calls, child workflows,
signals and search attributes (`carry.py` builds their payloads). An effect that yields an
outcome (an invoice opened, a collection paid or failed) steps the machine again at once; `Then`
steps it after the effects before it.

Every call here schedules what the workflow scheduled before the machine existed, in the same
order, so recorded histories replay unchanged (ADR 0009). Postgres steps are local activities
in runs started since ADR 0025 (the `local-db-steps` patch), activities in runs before it."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TypeVar

from temporalio import workflow
from temporalio.common import Priority
from temporalio.exceptions import ActivityError, ApplicationError, FailureError
from temporalio.exceptions import WorkflowAlreadyStartedError as AlreadyStarted
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    import billing.subscription as m
    import workflows.activity_refs as refs
    import workflows.notify as notice
    import workflows.subscription.carry as carry
    import workflows.subscription_io as io
    from billing.invoicing import Line
    from workflows.activity_refs import ActivityRef, call, call_local
    from workflows.dunning import DunningWorkflow, dunning_workflow_id
    from workflows.dunning_io import InvoicePaid, PaymentMethodUpdated
    from workflows.payment_grace import resolve_payment_grace, start_payment_grace
    from workflows.retry import (
        DUNNING,
        db_activity,
        lane,
        local_db_activity,
        stripe_read,
        stripe_write,
    )
    from workflows.shared_io import RereadInvoiceInput, StripeInvoiceRead

MISSING_CARD = "stripe_payment_method_missing"

A = TypeVar("A")
R = TypeVar("R")


class Interpreter:
    def __init__(self, inp: io.SubscriptionInput, state: m.SubscriptionState) -> None:
        self.input = inp
        self.state = state
        self.issued: str | None = None  # the invoice the last `handle` issued
        # The API request behind what `handle` is carrying out (None: the workflow's own
        # decision): the audit rows of the changes and invoices it writes name it.
        self.request_id: str | None = None
        self.continue_as_new = False
        # The lane of what is being handled (ADR 0014): the workflow sets it per event; None
        # inherits the workflow's own priority.
        self.priority: Priority | None = None
        # Postgres steps run as local activities (ADR 0025); the workflow sets it from its
        # patch at the start of each run, so a run recorded before keeps regular activities.
        self.local_db = False

    async def _db(self, ref: ActivityRef[A, R], arg: A, summary: str) -> R:
        """One Postgres step: a local activity in the worker holding the workflow task, or
        (runs recorded before ADR 0025) an activity on the main queue in the event's lane."""
        if self.local_db:
            return await call_local(ref, arg, **local_db_activity(summary))
        return await call(ref, arg, **db_activity(summary, self.priority))

    def business_now(self) -> datetime:
        return self.state.clock.business_at(workflow.now())

    async def handle(self, event: m.Event, request_id: str | None = None) -> list[m.Effect]:
        """Step the machine with `event` at the current business instant (usage priced first,
        when the event bills some) and carry out what it decides; returns the step's effects.
        `request_id`: the API request that sent the event, if one did."""
        self.issued = None
        self.request_id = request_id
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

    async def reread(self, event: m.StripeEvent) -> m.StripeEvent:
        """The event with its invoice's current state in Stripe (a late or out-of-order
        delivery cannot move the subscription backwards)."""
        if event.stripe_invoice_id is None:
            return event
        current: StripeInvoiceRead = await call(
            refs.REREAD_STRIPE_INVOICE,
            RereadInvoiceInput(event.stripe_invoice_id),
            **stripe_read(self.input.stripe_task_queue, "re-read the invoice", self.priority),
        )
        return replace(
            event,
            invoice_status=current.status,
            amount_paid=current.amount_paid,
            hosted_invoice_url=current.hosted_invoice_url or event.hosted_invoice_url,
        )

    async def start(self) -> None:
        inp = self.input
        customer = await call(
            refs.ENSURE_STRIPE_CUSTOMER,
            io.EnsureCustomerInput(
                inp.tenant_id, inp.tenant_name, inp.tenant_email, inp.stripe_customer_id
            ),
            **stripe_write(inp.stripe_task_queue, "ensure Stripe customer", self.priority),
        )
        await self._db(
            refs.RECORD_STRIPE_CUSTOMER,
            io.RecordCustomerInput(inp.tenant_id, customer.customer_id),
            "record Stripe customer",
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

    async def attach_card(self, payment_method_id: str) -> io.PaymentMethodResult:
        inp, customer_id = self.input, self.state.customer_id
        assert customer_id is not None
        card = await call(
            refs.ATTACH_PAYMENT_METHOD,
            io.AttachPaymentMethodInput(inp.tenant_id, customer_id, payment_method_id),
            **stripe_write(inp.stripe_task_queue, "attach payment method", self.priority),
        )
        await self._db(
            refs.RECORD_PAYMENT_METHOD,
            io.RecordPaymentMethodInput(inp.tenant_id, card),
            "record payment method",
        )
        return card

    async def _overage(self, window: tuple[datetime, datetime]) -> tuple[Line, ...]:
        """Overage of the window's usage so far, priced by the usage side (period counters plus
        the tenant's entitlement overrides)."""
        plan = carry.plan_out(self.state.plan).definition
        result = await self._db(
            refs.COMPUTE_PERIOD_OVERAGE,
            io.PeriodOverageInput(self.input.tenant_id, window[0].isoformat(), plan),
            "close period: price usage overage",
        )
        return carry.overage_in(result, window)

    def _bump(self, counter: str) -> m.SubscriptionState:
        """Advance one of the sequence numbers that number writes (ADR 0009, decision 7)."""
        self.state = replace(self.state, **{counter: getattr(self.state, counter) + 1})
        return self.state

    async def _run(self, effect: m.Effect) -> m.Event | None:
        inp, s = self.input, self.state
        match effect:
            case m.IssueInvoice():
                return await self._issue(effect)
            case m.Collect():
                return await self._collect(effect)
            case m.ProjectInvoice():
                row = carry.invoice_projection(
                    inp, self._bump("invoice_version"), effect, workflow.now(), self.request_id
                )
                await self._db(
                    refs.PROJECT_INVOICE,
                    row,
                    f"project invoice {effect.status}",
                )
            case m.RecordChange():
                change = carry.change_row(
                    inp, self._bump("change_seq"), effect, self.issued, self.request_id
                )
                await self._db(
                    refs.RECORD_SUBSCRIPTION_CHANGE,
                    change,
                    f"record change {effect.kind}",
                )
            case m.Project():
                # The UI's view (search attributes, details) moves with the Postgres projection.
                publish(inp, s)
                projected = carry.subscription_projection(inp, self._bump("version"))
                await self._db(
                    refs.PROJECT_SUBSCRIPTION,
                    projected,
                    f"project status {s.status.value}",
                )
            case m.Publish():
                publish(inp, s)
            case m.Notify(event_type=kind, message_id=message_id, payload=payload):
                await notice.notify(
                    inp.tenant_id, kind, message_id, dict(payload), local=self.local_db
                )
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
        return None  # Outcome: for the caller only

    async def _issue(self, effect: m.IssueInvoice) -> m.InvoiceOpened:
        """Write the invoice, then mirror it to Stripe (the machine then projects and
        collects it)."""
        inp, invoice_id = self.input, str(workflow.uuid4())
        s = self._bump("invoice_version")
        record = carry.invoice_record(inp, s, invoice_id, effect, self.request_id)
        await self._db(
            refs.RECORD_INVOICE,
            record,
            f"record invoice ({effect.reason})",
        )
        mirror = carry.stripe_invoice(inp, s, invoice_id, effect.draft)
        read = await call(
            refs.CREATE_STRIPE_INVOICE,
            mirror,
            **stripe_write(inp.stripe_task_queue, "mirror invoice to Stripe", self.priority),
        )
        self.issued = invoice_id
        return m.InvoiceOpened(invoice_id, effect.draft.total, carry.receipt_in(read))

    async def _collect(self, effect: m.Collect) -> m.InvoicePaid | m.CollectionFailed:
        ask = io.CollectInvoiceInput(effect.invoice_id, effect.stripe_invoice_id, effect.attempt)
        try:
            result = await call(
                refs.COLLECT_INVOICE,
                ask,
                **stripe_write(
                    self.input.stripe_task_queue,
                    f"collect invoice (attempt {effect.attempt})",
                    self.priority,
                ),
            )
        except ActivityError as error:
            cause = error.cause
            if not (isinstance(cause, ApplicationError) and cause.type == MISSING_CARD):
                raise
            # No card on file is a failed collection, not a broken workflow.
            unpaid = StripeInvoiceRead(effect.stripe_invoice_id, "open", effect.total, 0)
            result = io.CollectInvoiceResult("no_payment_method", unpaid, None, cause.message)
        return carry.collected(effect, result)

    async def _start_dunning(self, effect: m.StartDunning) -> None:
        """Hand the unpaid invoice to its `dunning:{invoice_id}` child (ADR 0005). ABANDON: the
        child must outlive this run's continue-as-new; later runs reach it by id."""
        try:
            await workflow.start_child_workflow(
                DunningWorkflow.run,
                carry.dunning_input(self.input, self.state, effect),
                id=dunning_workflow_id(effect.invoice_id),
                parent_close_policy=ParentClosePolicy.ABANDON,
                static_summary=f"dunning of invoice {effect.invoice_id}",
                # Money already owed goes ahead of the bulk of a billing day.
                priority=lane(DUNNING, self.input.tenant_id),
            )
        except AlreadyStarted:
            pass  # already chasing this invoice: attach to it


async def _signal_dunning(
    invoice_id: str, signal: str, payload: PaymentMethodUpdated | InvoicePaid
) -> None:
    """Forward to the child by id: works from any run, including after continue-as-new."""
    try:
        handle = workflow.get_external_workflow_handle(dunning_workflow_id(invoice_id))
        await handle.signal(signal, payload)
    except FailureError:
        # The child has just finished: its `dunning_finished` is on the way to us.
        workflow.logger.info("dunning of %s did not take %s", invoice_id, signal)


def publish(inp: io.SubscriptionInput, s: m.SubscriptionState) -> None:
    """The UI's view: search attributes and the current details (the billing clock)."""
    workflow.upsert_search_attributes(carry.search_attributes(inp, s))
    workflow.set_current_details(carry.details(inp, s))
