"""Between the machine's typed state (`billing.subscription`) and what crosses Temporal's
boundary: `SubscriptionCarry` (continue-as-new), the requests and answers of the workflow's
updates and queries, and the activities' payloads. The only place they convert."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    import billing.subscription as m
    import workflows.search_attributes as sa
    from billing.catalog import Interval, Plan
    from billing.discounts import Discount
    from billing.dunning import DunningPolicy
    from billing.invoicing import InvoiceDraft, Line, LineKind
    from billing.lifecycle import Status
    from billing.periods import BusinessClock
    from workflows.dunning_io import DunningInput, DunningResult
    from workflows.shared_io import InvoiceProjection, StripeInvoiceRead
    from workflows.subscription_io import (
        AddChargeRequest,
        AddCreditRequest,
        ApplyDiscountRequest,
        CancelRequest,
        ChangePlanRequest,
        ChangePlanResult,
        ChargeResult,
        CollectInvoiceResult,
        CreateStripeInvoiceInput,
        DiscountPayload,
        InvoiceLinePayload,
        LifecycleResult,
        OpenInvoice,
        PauseRequest,
        PaymentMethodResult,
        PendingChargePayload,
        PeriodOverageResult,
        PlanSnapshot,
        PreviewResult,
        RecordInvoiceInput,
        SetPaymentMethodRequest,
        StripeEventSignal,
        SubscriptionCarry,
        SubscriptionChange,
        SubscriptionInput,
        SubscriptionProjection,
        SubscriptionState,
    )


Request = (
    ChangePlanRequest
    | CancelRequest
    | PauseRequest
    | SetPaymentMethodRequest
    | AddChargeRequest
    | AddCreditRequest
    | ApplyDiscountRequest
)


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def plan_in(snapshot: PlanSnapshot) -> m.SubscribedPlan:
    return m.SubscribedPlan(snapshot.plan_id, snapshot.version, Plan.from_dict(snapshot.definition))


def plan_out(plan: m.SubscribedPlan) -> PlanSnapshot:
    return PlanSnapshot(plan.plan_id, plan.code, plan.version, plan.plan.to_dict())


def card_in(card: PaymentMethodResult) -> m.Card:
    return m.Card(card.payment_method_id, card.brand, card.last4, card.exp_month, card.exp_year)


def card_out(card: m.Card) -> PaymentMethodResult:
    return PaymentMethodResult(
        card.payment_method_id, card.brand, card.last4, card.exp_month, card.exp_year
    )


def receipt_in(invoice: StripeInvoiceRead) -> m.Receipt:
    return m.Receipt(
        invoice.stripe_invoice_id,
        invoice.status,
        invoice.amount_due,
        invoice.amount_paid,
        invoice.hosted_invoice_url,
        invoice.invoice_pdf,
    )


def line_out(line: Line) -> InvoiceLinePayload:
    return InvoiceLinePayload(
        kind=line.kind.value,
        description=line.description,
        amount=line.amount,
        metric=line.metric,
        quantity=line.quantity,
        period_start=iso(line.period_start),
        period_end=iso(line.period_end),
    )


def overage_in(result: PeriodOverageResult, window: tuple[datetime, datetime]) -> tuple[Line, ...]:
    return tuple(
        Line(
            LineKind.OVERAGE,
            line.description,
            line.amount,
            metric=line.metric,
            quantity=line.used,
            period_start=window[0],
            period_end=window[1],
        )
        for line in result.lines
        if line.amount
    )


def terms(inp: SubscriptionInput, signed_up_on: Plan) -> m.Terms:
    """`signed_up_on`: the input's plan (its trial length, when the input names none). Which
    patched behaviours the run has is set by the workflow at the start of each run."""
    plan = signed_up_on
    return m.Terms(
        subscription_id=inp.subscription_id,
        interval=Interval(inp.interval),
        trial_days=inp.trial_days if inp.trial_days is not None else plan.trial_days,
        trial_end_policy=inp.trial_end_policy,
        cancel_after_days=DunningPolicy.from_dict(inp.dunning_policy).cancel_after_days,
        time_scale=inp.time_scale,
    )


def discount_in(d: DiscountPayload | None) -> Discount | None:
    if d is None:
        return None
    return Discount(
        d.code, d.percent_off, d.amount_off, d.applies_to, d.periods, d.used,
        dt(d.covered_start), d.amount_left,
    )  # fmt: skip


def discount_out(d: Discount | None) -> DiscountPayload | None:
    if d is None:
        return None
    return DiscountPayload(
        d.code, d.percent_off, d.amount_off, d.applies_to, d.periods, d.used,
        iso(d.covered_start), d.amount_left,
    )  # fmt: skip


def state_in(inp: SubscriptionInput, now: datetime) -> m.SubscriptionState:
    """The state a run starts from: the carried one, or a new subscription at `now` (with the
    coupon redeemed at sign-up, if any)."""
    c = inp.carry
    signed_up = plan_in(inp.plan)
    if c is None:
        clock = BusinessClock(now, dt(inp.business_start) or now, inp.time_scale)
        new = m.new_subscription(terms(inp, signed_up.plan), signed_up, clock)
        return replace(new, discount=discount_in(inp.discount))
    return m.SubscriptionState(
        terms=terms(inp, signed_up.plan),
        status=Status(c.status),
        plan=plan_in(c.plan),
        clock=BusinessClock(
            datetime.fromisoformat(c.wall_origin),
            datetime.fromisoformat(c.business_origin),
            inp.time_scale,
        ),
        customer_id=c.customer_id,
        anchor=dt(c.anchor),
        period_index=c.period_index,
        trial_end=dt(c.trial_end),
        cancel_at_period_end=c.cancel_at_period_end,
        canceled_at=dt(c.canceled_at),
        paused_at=dt(c.paused_at),
        resume_at=dt(c.resume_at),
        pending_plan=plan_in(c.pending_plan) if c.pending_plan else None,
        credit_balance=c.credit_balance,
        has_payment_method=c.has_payment_method,
        card=card_in(c.card) if c.card else None,
        open_invoices=tuple(
            m.OpenInvoice(i.invoice_id, i.stripe_invoice_id, i.total, i.attempts)
            for i in c.open_invoices
        ),
        invoices_issued=c.invoices_issued,
        dunning=tuple(c.dunning_invoice_ids),
        cancel_due_at=dt(c.cancel_due_at),
        trial_ending_notice_at=dt(c.trial_ending_notice_at),
        card_expiring_notice_at=dt(c.card_expiring_notice_at),
        seen_event_ids=tuple(c.seen_event_ids),
        pending_charges=tuple(
            m.PendingCharge(p.key, p.description, p.amount) for p in c.pending_charges
        ),
        charge_keys=tuple(c.charge_keys),
        credit_keys=tuple(c.credit_keys),
        discount=discount_in(c.discount),
        version=c.version,
        invoice_version=c.invoice_version,
        change_seq=c.change_seq,
    )


def open_invoices_out(s: m.SubscriptionState) -> list[OpenInvoice]:
    return [
        OpenInvoice(i.invoice_id, i.stripe_invoice_id, i.total, i.attempts) for i in s.open_invoices
    ]


def carry_out(s: m.SubscriptionState) -> SubscriptionCarry:
    return SubscriptionCarry(
        status=s.status.value,
        plan=plan_out(s.plan),
        customer_id=s.customer_id,
        anchor=iso(s.anchor),
        period_index=s.period_index,
        trial_end=iso(s.trial_end),
        cancel_at_period_end=s.cancel_at_period_end,
        canceled_at=iso(s.canceled_at),
        paused_at=iso(s.paused_at),
        resume_at=iso(s.resume_at),
        pending_plan=plan_out(s.pending_plan) if s.pending_plan else None,
        credit_balance=s.credit_balance,
        version=s.version,
        invoice_version=s.invoice_version,
        change_seq=s.change_seq,
        has_payment_method=s.has_payment_method,
        wall_origin=s.clock.wall_origin.isoformat(),
        business_origin=s.clock.business_origin.isoformat(),
        seen_event_ids=list(s.seen_event_ids),
        open_invoices=open_invoices_out(s),
        invoices_issued=s.invoices_issued,
        pending_charges=[
            PendingChargePayload(p.key, p.description, p.amount) for p in s.pending_charges
        ],
        charge_keys=list(s.charge_keys),
        credit_keys=list(s.credit_keys),
        discount=discount_out(s.discount),
        dunning_invoice_ids=list(s.dunning),
        cancel_due_at=iso(s.cancel_due_at),
        trial_ending_notice_at=iso(s.trial_ending_notice_at),
        card=card_out(s.card) if s.card else None,
        card_expiring_notice_at=iso(s.card_expiring_notice_at),
    )


def change_plan_in(request: ChangePlanRequest) -> m.ChangePlan:
    return m.ChangePlan(
        plan_in(request.plan), request.actor, request.timing, dt(request.proration_date)
    )


def dunning_finished_in(result: DunningResult) -> m.DunningFinished:
    return m.DunningFinished(
        result.invoice_id,
        result.outcome,
        result.attempts,
        result.last_attempt,
        result.invoice_version,
        dt(result.exhausted_at),
    )


def stripe_event_in(event: StripeEventSignal) -> m.StripeEvent:
    return m.StripeEvent(
        event.event_id,
        event.event_type,
        event.invoice_id,
        event.stripe_invoice_id,
        event.invoice_status,
        event.amount_paid,
        event.hosted_invoice_url,
        event.stripe_payment_method_id,
    )


def state_out(inp: SubscriptionInput, s: m.SubscriptionState, now: datetime) -> SubscriptionState:
    """The `state` query's answer; `now` is the business instant."""
    period = s.period if s.anchor else None
    return SubscriptionState(
        subscription_id=inp.subscription_id,
        tenant_id=inp.tenant_id,
        status=s.status.value,
        plan_code=s.plan.code,
        interval=inp.interval,
        stripe_customer_id=s.customer_id,
        current_period_start=iso(period[0]) if period else None,
        current_period_end=iso(period[1]) if period else None,
        trial_end=iso(s.trial_end),
        version=s.version,
        cancel_at_period_end=s.cancel_at_period_end,
        pending_plan_code=s.pending_plan.code if s.pending_plan else None,
        credit_balance=s.credit_balance,
        open_invoices=open_invoices_out(s),
        invoices_issued=s.invoices_issued,
        dunning_invoice_ids=list(s.dunning),
        cancel_due_at=iso(s.cancel_due_at),
        paused_at=iso(s.paused_at),
        resume_at=iso(s.resume_at),
        has_payment_method=s.has_payment_method,
        business_now=now.isoformat(),
    )


# ------------------------------------------------------------------ the effects' payloads


def invoice_record(
    inp: SubscriptionInput,
    s: m.SubscriptionState,
    invoice_id: str,
    effect: m.IssueInvoice,
    request_id: str | None = None,
) -> RecordInvoiceInput:
    draft, period = effect.draft, effect.period
    return RecordInvoiceInput(
        invoice_id=invoice_id,
        tenant_id=inp.tenant_id,
        subscription_id=inp.subscription_id,
        billing_key=f"sub:{inp.subscription_id}:{effect.key}",
        billing_reason=effect.reason,
        currency=draft.currency,
        subtotal=draft.subtotal,
        total=draft.total,
        lines=[line_out(line) for line in draft.lines],
        period_start=period[0].isoformat(),
        period_end=period[1].isoformat(),
        version=s.invoice_version,
        request_id=request_id,
    )


def stripe_invoice(
    inp: SubscriptionInput, s: m.SubscriptionState, invoice_id: str, draft: InvoiceDraft
) -> CreateStripeInvoiceInput:
    assert s.customer_id is not None
    return CreateStripeInvoiceInput(
        invoice_id=invoice_id,
        customer_id=s.customer_id,
        currency=draft.currency,
        lines=[line_out(line) for line in draft.lines],
        tenant_id=inp.tenant_id,
        subscription_id=inp.subscription_id,
    )


def invoice_projection(
    inp: SubscriptionInput,
    s: m.SubscriptionState,
    effect: m.ProjectInvoice,
    now: datetime,
    request_id: str | None = None,
) -> InvoiceProjection:
    receipt = effect.receipt
    return InvoiceProjection(
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
        tenant_id=inp.tenant_id,
        request_id=request_id,
    )


def change_row(
    inp: SubscriptionInput,
    s: m.SubscriptionState,
    effect: m.RecordChange,
    issued: str | None,
    request_id: str | None = None,
) -> SubscriptionChange:
    details = dict(effect.details)
    if effect.with_invoice:
        details["invoice_id"] = issued
    return SubscriptionChange(
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
        request_id=request_id,
    )


def subscription_projection(
    inp: SubscriptionInput, s: m.SubscriptionState
) -> SubscriptionProjection:
    period = s.open_period()
    pending = s.pending_plan
    return SubscriptionProjection(
        subscription_id=inp.subscription_id,
        tenant_id=inp.tenant_id,
        version=s.version,
        status=s.status.value,
        plan_id=s.plan.plan_id,
        plan_code=s.plan.code,
        interval=inp.interval,
        current_period_start=iso(period[0]) if period else None,
        current_period_end=iso(period[1]) if period else None,
        trial_end=iso(s.trial_end),
        cancel_at_period_end=s.cancel_at_period_end,
        canceled_at=iso(s.canceled_at),
        paused_at=iso(s.paused_at),
        resume_at=iso(s.resume_at),
        pending_change={"plan_code": pending.code, "plan_id": pending.plan_id} if pending else None,
        # Payload only (ADR 0007): the usage path reads the workflow's clock.
        clock_wall_origin=s.clock.wall_origin.isoformat(),
        clock_business_origin=s.clock.business_origin.isoformat(),
        time_scale=inp.time_scale,
    )


def dunning_input(
    inp: SubscriptionInput, s: m.SubscriptionState, effect: m.StartDunning
) -> DunningInput:
    return DunningInput(
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
        invoice_version=s.invoice_version,
    )


def collected(
    effect: m.Collect, result: CollectInvoiceResult
) -> m.InvoicePaid | m.CollectionFailed:
    outcome = m.InvoicePaid if result.outcome in ("paid", "already_paid") else m.CollectionFailed
    return outcome(
        effect.invoice_id,
        effect.attempt,
        effect.total,
        receipt_in(result.invoice),
        result.outcome,
        result.decline_code,
        result.failure_message,
    )


def search_attributes(
    inp: SubscriptionInput, s: m.SubscriptionState
) -> list[SearchAttributeUpdate[Any]]:
    """What the Temporal UI filters on; the billing clock's next deadline (notices are timers
    of their own)."""
    deadline = m.billing_deadline(s)
    return [
        sa.TENANT_ID.value_set(inp.tenant_id),
        sa.SUBSCRIPTION_ID.value_set(inp.subscription_id),
        sa.PLAN_CODE.value_set(s.plan.code),
        sa.SUBSCRIPTION_STATUS.value_set(s.status.value),
        sa.NEXT_BILLING_AT.value_set(deadline.at) if deadline else sa.NEXT_BILLING_AT.value_unset(),
    ]


def details(inp: SubscriptionInput, s: m.SubscriptionState) -> str:
    """The Temporal UI's current details: status, plan, the billing clock's next deadline and
    its kind, the open invoices and those in dunning (whose own workflow, `dunning:{invoice}`,
    shows the step and the next retry)."""
    deadline = m.billing_deadline(s)
    pending = " (cancels at period end)" if s.cancel_at_period_end else ""
    next_at = f", next {deadline.kind.value} at {deadline.at.isoformat()}" if deadline else ""
    owed = ""
    if s.open_invoices:
        total = sum(invoice.total for invoice in s.open_invoices)
        owed = f"; {len(s.open_invoices)} open invoice(s), {total} {s.currency} due"
    chased = f"; in dunning: {', '.join(s.dunning)}" if s.dunning else ""
    return f"{s.status.value}{pending} on {s.plan.code}/{inp.interval}{next_at}{owed}{chased}"


# ------------------------------------------------------------------ requests and answers


def event_of(request: Request) -> m.Event:
    """The machine's event for an update's request."""
    match request:
        case ChangePlanRequest():
            return change_plan_in(request)
        case CancelRequest():
            return m.Cancel(request.actor, request.at_period_end)
        case PauseRequest():
            return m.Pause(request.actor, dt(request.resume_at))
        case SetPaymentMethodRequest():
            return m.SetPaymentMethod(request.payment_method_id, request.actor)
        case ApplyDiscountRequest():
            discount = discount_in(request.discount)
            assert discount is not None
            return m.ApplyDiscount(discount, request.actor, request.reason)
        case AddCreditRequest():
            return m.AddCredit(request.key, request.amount, request.actor, request.reason)
        case AddChargeRequest():
            return m.AddCharge(
                request.key, request.description, request.amount, request.invoice_now,
                request.actor, request.reason,
            )  # fmt: skip
    raise TypeError(f"not a subscription request: {request!r}")  # pragma: no cover


def outcome(effects: list[m.Effect]) -> m.Outcome:
    return next(e for e in effects if isinstance(e, m.Outcome))


def change_plan_out(
    inp: SubscriptionInput, s: m.SubscriptionState, done: m.Outcome, issued: str | None
) -> ChangePlanResult:
    draft = done.draft
    return ChangePlanResult(
        subscription_id=inp.subscription_id,
        kind=done.kind or "",
        effective_at=done.effective_at.isoformat(),
        scheduled=done.scheduled,
        lines=[line_out(line) for line in draft.lines] if draft else [],
        invoice_id=issued,
        invoice_total=draft.total if draft else 0,
        credit_balance=s.credit_balance,
        status=s.status.value,
    )


def charge_out(
    inp: SubscriptionInput, s: m.SubscriptionState, request: AddChargeRequest,
    done: m.Outcome, issued: str | None, added: bool,
) -> ChargeResult:  # fmt: skip
    return ChargeResult(
        subscription_id=inp.subscription_id,
        key=request.key,
        amount=request.amount,
        invoiced="now" if request.invoice_now else "next_invoice",
        invoice_id=issued,
        invoice_total=done.draft.total if done.draft else 0,
        status=s.status.value,
        added=added,
    )


def lifecycle_out(
    inp: SubscriptionInput, s: m.SubscriptionState, done: m.Outcome, issued: str | None
) -> LifecycleResult:
    return LifecycleResult(
        inp.subscription_id,
        s.status.value,
        s.cancel_at_period_end,
        done.effective_at.isoformat(),
        issued,
        done.draft.total if done.draft else 0,
    )


def preview_out(s: m.SubscriptionState, at: datetime, done: m.Outcome | None) -> PreviewResult:
    """`s`: the state the previewed step returned (or the current one, without a change)."""
    draft = done.draft if done else None
    next_at, next_draft = m.upcoming_invoice(s)
    return PreviewResult(
        kind=(done.kind or "") if done else "none",
        effective_at=(done.effective_at if done else at).isoformat(),
        proration_date=at.isoformat(),
        lines=[line_out(x) for x in draft.lines] if draft else [],
        total=draft.total if draft else 0,
        credit_balance_after=s.credit_balance,
        next_invoice_at=iso(next_at),
        next_invoice_lines=[line_out(x) for x in next_draft.lines] if next_draft else [],
        next_invoice_total=next_draft.total if next_draft else 0,
        currency=s.currency,
    )
