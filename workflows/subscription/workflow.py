"""SubscriptionWorkflow (`subscription:{id}`): one subscription's whole life.

The workflow owns the billing clock and interprets `billing.subscription`, the pure machine:
every handler takes the lock, steps the machine with its event and carries out the effects
(`workflows/subscription/effects.py`). Each run covers one stretch between boundaries (trial end
or a period end); at a boundary the machine asks to continue as new, carrying the state as
`SubscriptionCarry` (`carry.py` converts it), so a subscription that lives for years keeps a
short history.

Commands arrive as Updates whose validators run the machine's `check`: a refused command leaves
no trace in history. The `preview` query is the machine's `step` with its effects discarded.

Demo clock: business time runs `time_scale` times faster than workflow time. Business instants
(period bounds, proration) come from the state's clock; only timer durations are scaled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import NoReturn

from temporalio import workflow
from temporalio.common import Priority
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    import billing.subscription as m

    # Every payload module a result is decoded into is imported here, in the workflow's own
    # module: the data converter resolves a dataclass's annotations through the sandbox's
    # `sys.modules`, which holds only what this module imports (not what passed-through
    # modules import in turn).
    import workflows.shared_io  # noqa: F401
    import workflows.subscription.carry as carry
    import workflows.subscription_io as io
    from billing.errors import InvalidTransition
    from billing.lifecycle import Status
    from workflows.dunning import DUNNING_FINISHED_SIGNAL
    from workflows.dunning_io import DunningResult
    from workflows.errors import domain_errors
    from workflows.retry import BULK, CUSTOMER, DEFAULT, DUNNING, lane
    from workflows.subscription.effects import Interpreter, publish

# Guards every command added with dunning and notifications (issue 4), so histories recorded
# before them replay unchanged (tests/replay/histories/subscription/).
DUNNING_WIRING = "dunning-wiring"
# Guards the payment grace window opened beside each dunning child (ADR 0006).
PAYMENT_GRACE_WIRING = "payment-grace-wiring"
# Guards ending a trial that has a cancellation at period end pending, unbilled (ADR 0009).
TRIAL_CANCEL_AT_END = "trial-cancel-at-end"
# Guards the Stripe re-read a webhook signalled straight from acceptance may need (ADR 0024).
REREAD_IN_SUBSCRIPTION = "reread-in-subscription"
# Guards running the Postgres steps as local activities (ADR 0025): set at the start of a run,
# so a run recorded with them as activities replays with them as activities.
LOCAL_DB_STEPS = "local-db-steps"


def workflow_id(subscription_id: str) -> str:
    return f"subscription:{subscription_id}"


def _check_apply_before(apply_before: str | None) -> None:
    """Refuse a command accepted after its caller gave up (see ADR 0002, update timeouts)."""
    deadline = carry.dt(apply_before)
    if deadline is not None and workflow.now() > deadline:
        raise InvalidTransition(
            "the request expired before a worker could apply it; nothing was changed"
        )


@workflow.defn(name="subscription")
class SubscriptionWorkflow:
    @workflow.init
    def __init__(self, input: io.SubscriptionInput) -> None:
        # State exists before the first line of `run`: an Update delivered with the very first
        # workflow task is validated against it instead of against nothing.
        self._input = input
        self._m = Interpreter(input, carry.state_in(input, workflow.now()))
        # One command or boundary at a time: handlers and the main loop both run activities.
        self._lock = asyncio.Lock()
        # Bumped by every handler that moves the clock's next deadline; wakes the main loop.
        self._generation = 0

    @workflow.run
    async def run(self, input: io.SubscriptionInput) -> io.SubscriptionResult:
        # The patch markers sit at the start of every run, whatever moves below them.
        notices = workflow.patched(DUNNING_WIRING)
        grace = notices and workflow.patched(PAYMENT_GRACE_WIRING)
        trial_cancel = workflow.patched(TRIAL_CANCEL_AT_END)
        self._m.local_db = workflow.patched(LOCAL_DB_STEPS)
        s = self._m.state
        terms = replace(s.terms, notices=notices, grace=grace, trial_cancel_at_end=trial_cancel)
        self._m.state = replace(s, terms=terms)
        if input.carry is None:
            async with self._lock:
                self._m.priority = self._lane(CUSTOMER)  # a sign-up waits on its answer
                await self._m.start()
        publish(input, self._m.state)

        while not self._ended():
            generation = self._generation
            deadline = m.next_deadline(self._m.state)
            if workflow.info().is_continue_as_new_suggested():
                # Long quiet stretches (a pause with no end date) still get a fresh history.
                await self._continue_as_new()
            if deadline is None:
                await workflow.wait_condition(self._moved_since(generation))
                continue
            wait = self._wall_until(deadline.at)
            if wait > timedelta(0):
                try:
                    await workflow.wait_condition(
                        self._moved_since(generation),
                        timeout=wait,
                        timeout_summary=deadline.kind.value,
                    )
                    continue  # a handler moved the deadline: recompute it
                except TimeoutError:
                    pass
            async with self._lock:
                if self._generation != generation or m.next_deadline(self._m.state) != deadline:
                    continue  # a handler got the lock first and changed the plan of record
                self._m.priority = self._lane(BULK)  # a period boundary: billing-day work
                await self._m.handle(m.DeadlineReached(deadline.kind, deadline.at))
            if self._m.continue_as_new and not self._ended():
                await self._continue_as_new()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return io.SubscriptionResult(input.subscription_id, self._m.state.status.value)

    async def _continue_as_new(self) -> NoReturn:
        """Let in-flight updates finish (their results must reach their callers), then start
        a fresh history carrying the state."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(replace(self._input, carry=carry.carry_out(self._m.state)))

    async def _command(self, event: m.Event, request_id: str | None) -> list[m.Effect]:
        """Lock, check again, step and apply (`request_id`: the API request that sent it)."""
        async with self._lock:
            self._recheck(event)
            self._m.priority = self._lane(CUSTOMER)
            effects = await self._m.handle(event, request_id)
            self._generation += 1
            return effects

    def _recheck(self, event: m.Event) -> None:
        """The state may have moved while the update waited for the lock. A refusal here must
        be an ApplicationError (any other exception would fail the workflow task and retry it
        forever), of the type recorded histories carry. The deadline is not checked again: the
        update was accepted in time."""
        try:
            m.check(self._m.state, event, self._m.business_now())
        except InvalidTransition as error:
            raise ApplicationError(
                error.message, type="InvalidTransition", non_retryable=True
            ) from error

    def _validate(self, apply_before: str | None, event: m.Event) -> None:
        _check_apply_before(apply_before)
        m.check(self._m.state, event, self._m.business_now())

    async def _lifecycle(self, event: m.Event, request_id: str | None) -> io.LifecycleResult:
        done = carry.outcome(await self._command(event, request_id))
        return carry.lifecycle_out(self._input, self._m.state, done, self._m.issued)

    # ------------------------------------------------------------------------------ updates

    @workflow.update(name="change_plan")
    async def change_plan(self, request: io.ChangePlanRequest) -> io.ChangePlanResult:
        done = carry.outcome(await self._command(carry.event_of(request), request.request_id))
        return carry.change_plan_out(self._input, self._m.state, done, self._m.issued)

    @change_plan.validator
    @domain_errors
    def validate_change_plan(self, request: io.ChangePlanRequest) -> None:
        self._validate(request.apply_before, carry.event_of(request))

    @workflow.update(name="cancel")
    async def cancel(self, request: io.CancelRequest) -> io.LifecycleResult:
        return await self._lifecycle(carry.event_of(request), request.request_id)

    @cancel.validator
    @domain_errors
    def _validate_cancel(self, request: io.CancelRequest) -> None:
        self._validate(request.apply_before, carry.event_of(request))

    @workflow.update(name="undo_cancel")
    async def undo_cancel(self, request: io.LifecycleRequest) -> io.LifecycleResult:
        return await self._lifecycle(m.UndoCancel(request.actor), request.request_id)

    @undo_cancel.validator
    @domain_errors
    def _validate_undo_cancel(self, request: io.LifecycleRequest) -> None:
        self._validate(request.apply_before, m.UndoCancel(request.actor))

    @workflow.update(name="pause")
    async def pause(self, request: io.PauseRequest) -> io.LifecycleResult:
        return await self._lifecycle(carry.event_of(request), request.request_id)

    @pause.validator
    @domain_errors
    def _validate_pause(self, request: io.PauseRequest) -> None:
        self._validate(request.apply_before, carry.event_of(request))

    @workflow.update(name="resume")
    async def resume(self, request: io.LifecycleRequest) -> io.LifecycleResult:
        return await self._lifecycle(m.Resume(request.actor), request.request_id)

    @resume.validator
    @domain_errors
    def _validate_resume(self, request: io.LifecycleRequest) -> None:
        self._validate(request.apply_before, m.Resume(request.actor))

    @workflow.update(name="add_charge")
    async def add_charge(self, request: io.AddChargeRequest) -> io.ChargeResult:
        """A one-off charge (ADR 0022): invoiced now, or kept for the next invoice."""
        added = request.key not in self._m.state.charge_keys
        done = carry.outcome(await self._command(carry.event_of(request), request.request_id))
        issued = self._m.issued if request.invoice_now and added else None
        return carry.charge_out(self._input, self._m.state, request, done, issued, added)

    @add_charge.validator
    @domain_errors
    def _validate_add_charge(self, request: io.AddChargeRequest) -> None:
        self._validate(request.apply_before, carry.event_of(request))

    @workflow.update(name="apply_discount")
    async def apply_discount(self, request: io.ApplyDiscountRequest) -> io.LifecycleResult:
        """A coupon applied after sign-up (ADR 0023)."""
        return await self._lifecycle(carry.event_of(request), request.request_id)

    @apply_discount.validator
    @domain_errors
    def _validate_apply_discount(self, request: io.ApplyDiscountRequest) -> None:
        self._validate(request.apply_before, carry.event_of(request))

    @workflow.update(name="add_credit")
    async def add_credit(self, request: io.AddCreditRequest) -> io.CreditResult:
        """A credit note's amount for the credit balance (ADR 0020)."""
        added = request.key not in self._m.state.credit_keys
        await self._command(carry.event_of(request), request.request_id)
        s = self._m.state
        return io.CreditResult(
            self._input.subscription_id, request.key, request.amount, s.credit_balance, added
        )

    @add_credit.validator
    @domain_errors
    def _validate_add_credit(self, request: io.AddCreditRequest) -> None:
        self._validate(request.apply_before, carry.event_of(request))

    @workflow.update(name="set_payment_method")
    async def set_payment_method(
        self, request: io.SetPaymentMethodRequest
    ) -> io.PaymentMethodResult:
        async with self._lock:
            self._recheck(carry.event_of(request))
            self._m.priority = self._lane(CUSTOMER)
            card = await self._m.attach_card(request.payment_method_id)
            await self._m.handle(
                m.PaymentMethodSet(carry.card_in(card), request.actor), request.request_id
            )
            self._generation += 1
            return card

    @set_payment_method.validator
    @domain_errors
    def _validate_payment_method(self, request: io.SetPaymentMethodRequest) -> None:
        self._validate(request.apply_before, carry.event_of(request))

    # ------------------------------------------------------------------------------ signals

    @workflow.signal(name=DUNNING_FINISHED_SIGNAL)
    async def dunning_finished(self, result: DunningResult) -> None:
        async with self._lock:
            if result.invoice_id in self._m.state.dunning:
                self._m.priority = self._lane(DUNNING)
                await self._m.handle(carry.dunning_finished_in(result))
                self._generation += 1

    @workflow.signal(name="stripe_event")
    async def stripe_event(self, event: io.StripeEventSignal) -> None:
        async with self._lock:
            self._m.priority = self._lane(DEFAULT)
            e = carry.stripe_event_in(event)
            # Sent straight from acceptance (ADR 0024): the snapshot is checked against Stripe
            # here, and only when the machine would act on it. Signals from `stripe_event`
            # runs carry no `reread` (they re-read before signalling), so older histories
            # never reach the patch.
            if (
                event.reread
                and m.reread_needed(self._m.state, e)
                and workflow.patched(REREAD_IN_SUBSCRIPTION)
            ):
                e = await self._m.reread(e)
            await self._m.handle(e)

    # ------------------------------------------------------------------------------ queries

    @workflow.query(name="state")
    def state(self) -> io.SubscriptionState:
        return carry.state_out(self._input, self._m.state, self._m.business_now())

    @workflow.query(name="preview")
    def preview(self, request: io.PreviewRequest) -> io.PreviewResult:
        """What a change would bill now and at the next renewal; without a plan, the upcoming
        invoice as things stand: the machine's `step` with its effects discarded."""
        s = self._m.state
        # A query sees the time of the last workflow task, which can be long ago: the caller
        # says what time it is (`as_of`, wall clock) and the workflow maps it onto its clock.
        as_of = carry.dt(request.as_of)
        at = carry.dt(request.proration_date) or (
            s.clock.business_at(as_of) if as_of else self._m.business_now()
        )
        at = at.replace(microsecond=0)
        if request.plan is None:
            return carry.preview_out(s, at, None)
        proration = at if request.proration_date else None
        asked = m.ChangePlan(carry.plan_in(request.plan), "preview", request.timing, proration)
        after, effects = m.step(s, asked, at)
        return carry.preview_out(after, at, carry.outcome(effects))

    # ------------------------------------------------------------------------------ plumbing

    def _lane(self, key: int) -> Priority:
        return lane(key, self._input.tenant_id)

    def _ended(self) -> bool:
        return self._m.state.status is Status.CANCELED

    def _moved_since(self, generation: int) -> Callable[[], bool]:
        return lambda: self._generation != generation

    def _wall_until(self, deadline: datetime) -> timedelta:
        remaining = deadline - self._m.business_now()
        scale = self._input.time_scale
        return remaining if scale == 1.0 else remaining / scale
