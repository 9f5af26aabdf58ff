"""The subscription machine (billing/subscription.py) without a server.

1. A table: every (status, event) pair, with the status it leads to or the refusal, run through
   `step` and the effects it chains (an invoice opened is collected, `Then` steps again).
2. A hypothesis state machine over random sequences of plan changes, period closes with usage,
   failing and recovering payments, pauses, cancels and undos. After every step it checks that
   each period is billed once, every invoice total is the sum of its lines and positive, the
   credit balance is never negative, the preview is the bill, and the status moved only along
   `TRANSITIONS`. The carried state survives continue-as-new unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import billing.subscription as m
import workflows.subscription.carry as carry
from billing.catalog import Interval, load_catalog
from billing.discounts import BASE_KINDS, Discount
from billing.errors import InvalidTransition
from billing.invoicing import Line, LineKind
from billing.lifecycle import Status
from billing.periods import BusinessClock
from config import ROOT
from workflows.subscription_io import SubscriptionInput

CATALOG = load_catalog(ROOT / "catalog" / "plans.toml")
PLANS = {
    code: m.SubscribedPlan(f"plan-{code}", 1, CATALOG.plan(code))
    for code in ("free", "standard", "enterprise")
}
START = datetime(2027, 1, 1, tzinfo=UTC)
CARD = m.Card("pm_1", "visa", "4242", 12, 2030)


def _state(**changes: object) -> m.SubscriptionState:
    terms = m.Terms("sub_1", Interval.MONTH, trial_days=0)
    state = m.new_subscription(terms, PLANS["standard"], BusinessClock(START, START))
    return replace(state, customer_id="cus_1", **changes)  # type: ignore[arg-type]


ACTIVE = _state(status=Status.ACTIVE, anchor=START, has_payment_method=True, card=CARD)
UNPAID = m.OpenInvoice("inv_1", "in_1", 1500, attempts=1)
STATES = {
    Status.INCOMPLETE: _state(),
    Status.TRIALING: _state(
        status=Status.TRIALING, trial_end=START + timedelta(days=14), has_payment_method=True
    ),
    Status.ACTIVE: ACTIVE,
    Status.PAST_DUE: replace(
        ACTIVE, status=Status.PAST_DUE, open_invoices=(UNPAID,), dunning=("inv_1",)
    ),
    Status.PAUSED: replace(
        ACTIVE,
        status=Status.PAUSED,
        paused_at=START + timedelta(days=3),
        resume_at=START + timedelta(days=20),
    ),
    Status.CANCELED: replace(ACTIVE, status=Status.CANCELED, canceled_at=START),
}
NOW = START + timedelta(days=10)


def _deadline(state: m.SubscriptionState) -> m.Event | None:
    deadline = m.billing_deadline(state)
    return m.DeadlineReached(deadline.kind, deadline.at) if deadline else None


REFUSED = "refused"
NONE = "no such event"
EVENTS: dict[str, object] = {
    "change_plan": m.ChangePlan(PLANS["enterprise"], "user", "immediate"),
    "cancel_now": m.Cancel("user"),
    "cancel_at_period_end": m.Cancel("user", at_period_end=True),
    "undo_cancel": m.UndoCancel("user"),
    "pause": m.Pause("user"),
    "resume": m.Resume("user"),
    "set_payment_method": m.SetPaymentMethod("pm_2", "user"),
    "payment_method_set": m.PaymentMethodSet(CARD, "user"),
    "deadline": _deadline,
    "stripe_paid": m.StripeEvent("evt_1", "invoice.paid", invoice_id="inv_1"),
    "stripe_failed": m.StripeEvent("evt_2", "invoice.payment_failed", invoice_id="inv_1"),
    "collection_paid": m.InvoicePaid(
        "inv_1", 2, 1500, m.Receipt("in_1", "paid", 1500, 1500), "paid"
    ),
    "collection_failed": m.CollectionFailed(
        "inv_1", 2, 1500, m.Receipt("in_1", "open", 1500, 0), "declined", "card_declined"
    ),
    "dunning_recovered": m.DunningFinished("inv_1", "recovered", attempts=2, last_attempt=3),
    "dunning_exhausted": m.DunningFinished("inv_1", "exhausted", attempts=4, last_attempt=5),
    "charge_now": m.AddCharge("setup-1", "Setup fee", 5000, True, "op"),
    "charge_later": m.AddCharge("setup-2", "Setup fee", 5000, False, "op"),
    "credit": m.AddCredit("credit-note:1", 1000, "op"),
    "discount": m.ApplyDiscount(Discount("SAVE20", 20, None, "both", 3), "op"),
}
IN, TR, AC, PD, PA, CA = (
    Status.INCOMPLETE,
    Status.TRIALING,
    Status.ACTIVE,
    Status.PAST_DUE,
    Status.PAUSED,
    Status.CANCELED,
)
R, N = REFUSED, NONE
# status -> the status each event leads to (collections succeed), or REFUSED. Columns: change
# plan, cancel now, cancel at period end, undo cancel, pause, resume, set payment method (the
# request), payment method set (the card attached), deadline (the billing clock's next), Stripe
# paid, Stripe failed, collection paid, collection failed, dunning recovered, dunning exhausted
# (each about invoice inv_1, open and under dunning in the past-due state), a one-off charge
# invoiced now, one for the next invoice, a credit note's credit for the balance, a coupon.
TABLE: dict[Status, dict[str, Status | str]] = {
    IN: dict(
        zip(EVENTS, (R, R, R, R, R, R, IN, IN, N, IN, IN, IN, IN, IN, IN, R, R, R, R), strict=True)
    ),
    TR: dict(
        zip(
            EVENTS,
            (TR, CA, TR, R, R, R, TR, TR, AC, TR, TR, TR, TR, TR, TR, TR, TR, TR, TR),
            strict=True,
        )
    ),
    AC: dict(
        zip(
            EVENTS,
            (AC, CA, AC, R, PA, R, AC, AC, AC, AC, AC, AC, PD, AC, AC, AC, AC, AC, AC),
            strict=True,
        )
    ),
    PD: dict(
        zip(
            EVENTS,
            (R, CA, PD, R, R, R, PD, PD, PD, PD, PD, AC, PD, AC, PD, PD, PD, PD, PD),
            strict=True,
        )
    ),
    PA: dict(
        zip(
            EVENTS,
            (R, CA, R, R, R, AC, PA, PA, AC, PA, PA, PA, PA, PA, PA, R, R, PA, PA),
            strict=True,
        )
    ),
    CA: dict(
        zip(EVENTS, (R, R, R, R, R, R, R, R, N, CA, CA, CA, CA, CA, CA, R, R, R, R), strict=True)
    ),
}


@dataclass
class Harness:
    """A fake interpreter: invoices are written, collections succeed unless `declines`."""

    state: m.SubscriptionState
    declines: bool = False
    invoices: list[m.IssueInvoice] = field(default_factory=list)
    changes: list[m.RecordChange] = field(default_factory=list)
    moves: list[tuple[str, Status, Status]] = field(default_factory=list)
    effects: list[m.Effect] = field(default_factory=list)

    def run(self, event: object, now: datetime) -> list[m.Effect]:
        before = self.state.status
        self.state, effects = m.step(self.state, event, now)  # type: ignore[arg-type]
        if self.state.status is not before:
            self.moves.append((type(event).__name__, before, self.state.status))
        for effect in effects:
            self.effects.append(effect)  # in the order they run
            follow = self._outcome(effect)
            if follow is not None:
                self.run(follow, now)
        return effects

    def _outcome(self, effect: m.Effect) -> object | None:
        match effect:
            case m.IssueInvoice():
                self.invoices.append(effect)
                invoice_id = f"inv_{len(self.invoices) + 1}"
                receipt = m.Receipt(f"in_{invoice_id}", "open", effect.draft.total, 0)
                return m.InvoiceOpened(invoice_id, effect.draft.total, receipt)
            case m.Collect():
                paid = not self.declines
                receipt = m.Receipt(effect.stripe_invoice_id, "paid" if paid else "open", 0, 0)
                outcome = m.InvoicePaid if paid else m.CollectionFailed
                args = (effect.invoice_id, effect.attempt, effect.total, receipt)
                return outcome(*args, "paid" if paid else "declined")
            case m.RecordChange():
                self.changes.append(effect)
            case m.Then(event=event):
                return event
        return None


@pytest.mark.parametrize("status", list(TABLE))
@pytest.mark.parametrize("name", list(EVENTS))
def test_every_status_and_event(status: Status, name: str) -> None:
    state = STATES[status]
    event = EVENTS[name]
    if callable(event):
        event = event(state)
    expected = TABLE[status][name]
    if expected == NONE:
        assert event is None
        assert m.next_deadline(state) is None
        return
    harness = Harness(state)
    if expected == REFUSED:
        with pytest.raises(InvalidTransition):
            harness.run(event, NOW)
        return
    harness.run(event, NOW)
    assert harness.state.status is expected
    for kind, before, after in harness.moves:
        assert (before, after) in m.TRANSITIONS[kind], (kind, before, after)


def test_the_table_names_every_status_and_every_outside_event() -> None:
    assert set(TABLE) == set(Status)
    covered = {type(e).__name__ for e in EVENTS.values() if not callable(e)} | {"DeadlineReached"}
    # The events from outside the machine; SignedUp, CustomerCreated and InvoiceOpened happen
    # once, in one status, and Canceled and Paused are its own (through `Then`).
    outside = set(m.Event.__args__) - {  # type: ignore[attr-defined]
        m.SignedUp,
        m.CustomerCreated,
        m.InvoiceOpened,
        m.Canceled,
        m.Paused,
    }
    assert {cls.__name__ for cls in outside} <= covered


def test_a_renewal_whose_payment_fails_is_recorded_active_to_past_due_then_renewed() -> None:
    harness = Harness(ACTIVE, declines=True)
    end = ACTIVE.period[1]
    harness.run(m.DeadlineReached(m.DeadlineKind.RENEWAL, end), end)
    assert [c.kind for c in harness.changes] == ["payment_failed", "renewed"]
    assert harness.state.status is Status.PAST_DUE
    assert harness.state.dunning == ("inv_2",)
    kinds = [type(e).__name__ for e in harness.effects]
    assert kinds.index("StartDunning") < kinds.index("ContinueAsNew")


@pytest.mark.parametrize(
    ("policy", "status", "kind"),
    [
        ("pause", Status.PAUSED, "trial_expired_paused"),
        ("cancel", Status.CANCELED, "trial_expired_canceled"),
    ],
)
def test_a_trial_without_a_card_ends_by_its_policy(policy: str, status: Status, kind: str) -> None:
    trialing = STATES[Status.TRIALING]
    state = replace(
        trialing, has_payment_method=False, terms=replace(trialing.terms, trial_end_policy=policy)
    )
    harness = Harness(state)
    harness.run(_deadline(state), NOW)
    assert harness.state.status is status
    assert [c.kind for c in harness.changes] == [kind]
    assert harness.invoices == []


@pytest.mark.parametrize("fixed", [True, False])
def test_a_cancellation_at_period_end_during_a_trial_ends_it_unbilled(fixed: bool) -> None:
    trialing = STATES[Status.TRIALING]
    state = replace(trialing, terms=replace(trialing.terms, trial_cancel_at_end=fixed))
    harness = Harness(state)
    harness.run(m.Cancel("user", at_period_end=True), NOW)
    done = next(e for e in harness.effects if isinstance(e, m.Outcome))
    assert done.effective_at == (state.trial_end if fixed else NOW)
    assert m.upcoming_invoice(harness.state) == (
        (None, None)
        if fixed
        else m.upcoming_invoice(replace(harness.state, cancel_at_period_end=False))
    )
    harness.run(_deadline(harness.state), NOW)
    if fixed:
        assert harness.state.status is Status.CANCELED
        assert harness.invoices == []
        assert [c.kind for c in harness.changes] == ["cancel_scheduled", "canceled"]
    else:  # histories recorded before the fix: the trial converted and billed a period
        assert harness.state.status is Status.ACTIVE
        assert [i.reason for i in harness.invoices] == ["subscription_create"]


def test_deadlines_name_their_kind_and_notices_win_a_tie() -> None:
    end = ACTIVE.period[1]
    state = replace(ACTIVE, card_expiring_notice_at=end)
    assert m.next_deadline(state) == m.Deadline(end, m.DeadlineKind.CARD_EXPIRING_NOTICE)
    assert m.billing_deadline(state) == m.Deadline(end, m.DeadlineKind.RENEWAL)
    due = replace(STATES[Status.PAST_DUE], cancel_due_at=end)
    assert m.next_deadline(due) == m.Deadline(end, m.DeadlineKind.CANCEL_FOR_NONPAYMENT)
    ending = replace(ACTIVE, cancel_at_period_end=True)
    assert m.next_deadline(ending) == m.Deadline(end, m.DeadlineKind.CANCEL_AT_PERIOD_END)
    assert m.next_deadline(STATES[Status.CANCELED]) is None


def test_a_refused_command_leaves_the_state_as_it_was() -> None:
    with pytest.raises(InvalidTransition, match="already on standard"):
        m.step(ACTIVE, m.ChangePlan(PLANS["standard"], "user"), NOW)
    with pytest.raises(InvalidTransition, match="proration_date"):
        m.step(
            ACTIVE,
            m.ChangePlan(PLANS["enterprise"], "user", proration_date=NOW),
            NOW - timedelta(days=1),
        )
    with pytest.raises(InvalidTransition, match="unknown timing"):
        m.step(ACTIVE, m.ChangePlan(PLANS["enterprise"], "user", "someday"), NOW)
    with pytest.raises(InvalidTransition, match="future"):
        m.step(ACTIVE, m.Pause("user", resume_at=NOW), NOW)
    with pytest.raises(InvalidTransition, match="being set up"):
        m.check(replace(ACTIVE, customer_id=None), m.SetPaymentMethod("pm", "user"), NOW)


# ---------------------------------------------------------------------------- one-off charges


def _one_off(invoice: m.IssueInvoice) -> list[tuple[str, int]]:
    return [(x.description, x.amount) for x in invoice.draft.lines if x.kind is LineKind.ONE_OFF]


def test_a_charge_invoiced_now_is_its_own_invoice_once_per_key() -> None:
    h = Harness(ACTIVE)
    h.run(m.AddCharge("setup-1", "Setup fee", 5000, True, "op"), NOW)
    h.run(m.AddCharge("setup-1", "Setup fee", 5000, True, "op"), NOW)  # the same request again
    assert [(i.reason, i.key, _one_off(i)) for i in h.invoices] == [
        ("manual", "charge:setup-1", [("Setup fee", 5000)])
    ]
    assert [c.kind for c in h.changes] == ["charge_added"]
    assert h.changes[0].details["invoiced"] == "now"


def test_a_declined_charge_goes_to_dunning_like_any_invoice() -> None:
    h = Harness(ACTIVE, declines=True)
    h.run(m.AddCharge("setup-1", "Setup fee", 5000, True, "op"), NOW)
    assert h.state.status is Status.PAST_DUE
    assert any(isinstance(e, m.StartDunning) for e in h.effects)


def test_a_charge_for_the_next_invoice_rides_on_the_renewal_once_and_survives_carry() -> None:
    h = Harness(ACTIVE)
    h.run(m.AddCharge("svc-1", "Onboarding services", 12000, False, "op"), NOW)
    assert h.invoices == []
    at, upcoming = m.upcoming_invoice(h.state)
    assert upcoming is not None
    assert ("Onboarding services", 12000) in [(x.description, x.amount) for x in upcoming.lines]
    h.state = _carried(h.state)  # continue-as-new between the charge and the renewal
    assert h.state.pending_charges == (m.PendingCharge("svc-1", "Onboarding services", 12000),)
    h.run(m.AddCharge("svc-1", "Onboarding services", 12000, False, "op"), NOW)  # again: no-op
    first = _deadline(h.state)
    assert first is not None
    h.run(first, NOW)
    assert [_one_off(i) for i in h.invoices] == [[("Onboarding services", 12000)]]
    assert h.invoices[0].draft.total == upcoming.total
    assert h.state.pending_charges == ()
    second = _deadline(h.state)
    assert second is not None
    h.run(second, NOW)
    assert [_one_off(i) for i in h.invoices] == [[("Onboarding services", 12000)], []]


def test_a_charge_during_the_trial_is_billed_with_the_first_period() -> None:
    h = Harness(STATES[Status.TRIALING])
    h.run(m.AddCharge("setup-1", "Setup fee", 5000, False, "op"), NOW)
    end = _deadline(h.state)
    assert end is not None
    h.run(end, NOW)
    assert h.state.status is Status.ACTIVE
    assert [(i.reason, _one_off(i)) for i in h.invoices] == [
        ("subscription_create", [("Setup fee", 5000)])
    ]


def test_a_credit_goes_to_the_balance_once_and_the_next_invoice_uses_it() -> None:
    h = Harness(ACTIVE)
    h.run(m.AddCredit("credit-note:1", 1000, "op", "goodwill"), NOW)
    h.run(m.AddCredit("credit-note:1", 1000, "op", "goodwill"), NOW)  # the same request again
    assert h.state.credit_balance == 1000
    assert [c.kind for c in h.changes] == ["credit_added"]
    _, upcoming = m.upcoming_invoice(h.state)
    assert upcoming is not None
    assert upcoming.total == 4900 - 1000
    h.state = _carried(h.state)
    h.run(m.AddCredit("credit-note:1", 1000, "op"), NOW)  # still known after continue-as-new
    renewal = _deadline(h.state)
    assert renewal is not None
    h.run(renewal, NOW)
    assert h.invoices[0].draft.total == 3900
    assert h.state.credit_balance == 0


@pytest.mark.parametrize("amount", [0, -1, 1.5, True])
def test_a_charge_is_a_positive_integer(amount: object) -> None:
    with pytest.raises(InvalidTransition, match="positive integer"):
        m.check(ACTIVE, m.AddCharge("k", "x", amount, True, "op"), NOW)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- random walks


def _carried(state: m.SubscriptionState) -> m.SubscriptionState:
    """Through `SubscriptionCarry` and back, as continue-as-new does."""
    inp = SubscriptionInput(
        subscription_id=state.terms.subscription_id,
        tenant_id="t",
        tenant_name="T",
        tenant_email=None,
        plan=carry.plan_out(PLANS["standard"]),
        interval=state.terms.interval.value,
        stripe_task_queue="stripe",
        actor="user",
        trial_days=state.terms.trial_days,
        carry=carry.carry_out(state),
    )
    return replace(carry.state_in(inp, START), terms=state.terms)


class SubscriptionWalk(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._sign_up()

    def _sign_up(self) -> None:
        terms = m.Terms("sub_w", Interval.MONTH, trial_days=0, cancel_after_days=3)
        state = m.new_subscription(terms, PLANS["standard"], BusinessClock(START, START))
        self.h = Harness(replace(state, customer_id="cus_w"))
        self.now = START
        self.h.run(m.PaymentMethodSet(CARD), self.now)
        self.h.run(m.SignedUp("user"), self.now)
        # Each billing period opened: the credit before it opened and its plan's base price.
        self.opened: dict[tuple[datetime, datetime], tuple[int, int]] = {}
        self._note_period(0)

    # ------------------------------------------------------------------------------ helpers

    def _note_period(self, credit_before: int) -> None:
        s = self.h.state
        if s.anchor is not None and s.status in (Status.ACTIVE, Status.PAST_DUE):
            if s.period not in self.opened:
                self.opened[s.period] = (credit_before, s.plan.plan.price(Interval.MONTH))

    def _try(self, event: object) -> None:
        before = self.h.state
        credit = before.credit_balance
        try:
            self.h.run(event, self.now)
        except InvalidTransition:
            assert self.h.state is before  # a refusal changes nothing
            return
        self._note_period(credit)

    def _with_usage(self, event: object, usage: int) -> object:
        window = m.usage_window(self.h.state, event, self.now)  # type: ignore[arg-type]
        if window is None or usage == 0:
            return event
        line = Line(LineKind.OVERAGE, "api calls", usage, "api_calls", usage, *window)
        return replace(event, usage=(line,))  # type: ignore[type-var]

    # -------------------------------------------------------------------------------- rules

    @rule(hours=st.integers(min_value=1, max_value=24 * 40))
    def time_passes(self, hours: int) -> None:
        """Up to the next deadline, never past it (the workflow's timer fires there)."""
        deadline = m.next_deadline(self.h.state)
        later = self.now + timedelta(hours=hours)
        self.now = min(later, deadline.at) if deadline else later

    @precondition(lambda self: m.next_deadline(self.h.state) is not None)
    @rule(usage=st.sampled_from([0, 0, 250, 4000]))
    def deadline_fires(self, usage: int) -> None:
        deadline = m.next_deadline(self.h.state)
        assert deadline is not None
        self.now = max(self.now, deadline.at)
        event = m.DeadlineReached(deadline.kind, deadline.at)
        if deadline.kind is m.DeadlineKind.RENEWAL and usage == 0:
            # The upcoming invoice the preview shows is the renewal's bill.
            upcoming_at, upcoming = m.upcoming_invoice(self.h.state)
            issued = len(self.h.invoices)
            self._try(event)
            new = self.h.invoices[issued:]
            billed = [i for i in new if i.reason == "subscription_cycle"]
            if upcoming is not None and upcoming.total > 0:
                assert [(i.draft.lines, i.draft.total) for i in billed] == [
                    (upcoming.lines, upcoming.total)
                ]
                assert billed[0].period[0] == upcoming_at
            return
        self._try(self._with_usage(event, usage))

    @rule(
        plan=st.sampled_from(sorted(PLANS)),
        timing=st.sampled_from(["default", "immediate", "period_end"]),
    )
    def change_plan(self, plan: str, timing: str) -> None:
        event = m.ChangePlan(PLANS[plan], "user", timing)
        try:
            _, preview = m.step(self.h.state, event, self.now)
        except InvalidTransition:
            preview = None
        issued = len(self.h.invoices)
        self._try(event)
        if preview is None:
            return
        quoted = next(e for e in preview if isinstance(e, m.Outcome))
        new = [i for i in self.h.invoices[issued:] if i.reason == "subscription_update"]
        if quoted.draft is not None and quoted.draft.total > 0:
            assert [i.draft for i in new] == [quoted.draft]  # the preview is the bill
        else:
            assert new == []

    @rule(at_period_end=st.booleans(), usage=st.sampled_from([0, 900]))
    def cancel(self, at_period_end: bool, usage: int) -> None:
        self._try(self._with_usage(m.Cancel("user", at_period_end), usage))

    @rule()
    def undo_cancel(self) -> None:
        self._try(m.UndoCancel("user"))

    @rule(days=st.one_of(st.none(), st.integers(min_value=1, max_value=60)))
    def pause(self, days: int | None) -> None:
        resume_at = self.now + timedelta(days=days) if days else None
        self._try(m.Pause("user", resume_at))

    @rule()
    def resume(self) -> None:
        self._try(m.Resume("user"))

    @rule(declines=st.booleans())
    def card_changes(self, declines: bool) -> None:
        self.h.declines = declines
        self._try(m.PaymentMethodSet(CARD, "user"))

    @precondition(lambda self: bool(self.h.state.dunning))
    @rule(outcome=st.sampled_from(["recovered", "exhausted", "paid_out_of_band"]))
    def dunning_finishes(self, outcome: str) -> None:
        invoice_id = self.h.state.dunning[0]
        self._try(m.DunningFinished(invoice_id, outcome, attempts=3, last_attempt=4))

    @precondition(lambda self: bool(self.h.state.open_invoices))
    @rule(paid=st.booleans())
    def stripe_reports(self, paid: bool) -> None:
        invoice = self.h.state.open_invoices[-1]
        kind = "invoice.paid" if paid else "invoice.payment_failed"
        event_id = f"evt_{len(self.h.effects)}"
        self._try(m.StripeEvent(event_id, kind, invoice_id=invoice.invoice_id))

    @precondition(lambda self: self.h.state.status is Status.CANCELED)
    @rule()
    def sign_up_again(self) -> None:
        """Reactivation starts a new subscription: the walk goes on with it."""
        self._sign_up()

    @rule()
    def continue_as_new(self) -> None:
        carried = _carried(self.h.state)
        assert carried == self.h.state
        self.h.state = carried

    # --------------------------------------------------------------------------- invariants

    @invariant()
    def invoices_add_up(self) -> None:
        for invoice in self.h.invoices:
            assert invoice.draft.total == sum(line.amount for line in invoice.draft.lines)
            assert invoice.draft.total > 0

    @invariant()
    def credit_is_never_negative(self) -> None:
        assert self.h.state.credit_balance >= 0

    @invariant()
    def each_period_is_billed_once(self) -> None:
        keys = [i.key for i in self.h.invoices]
        assert len(keys) == len(set(keys)), keys
        for period, (credit_before, price) in self.opened.items():
            base = [
                line
                for i in self.h.invoices
                for line in i.draft.lines
                if line.kind is LineKind.BASE and (line.period_start, line.period_end) == period
            ]
            assert len(base) <= 1, period
            if credit_before == 0 and price > 0:
                assert len(base) == 1, period

    @invariant()
    def only_documented_transitions(self) -> None:
        for kind, before, after in self.h.moves:
            assert (before, after) in m.TRANSITIONS[kind], (kind, before, after)


SubscriptionWalk.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_random_event_sequences = SubscriptionWalk.TestCase


# --------------------------------------------------------------------------------- discounts

SAVE20_TWICE = Discount("SAVE20", 20, None, "both", 2)


def _off(invoice: m.IssueInvoice) -> int:
    return -sum(x.amount for x in invoice.draft.lines if x.kind is LineKind.DISCOUNT)


def _renew(h: Harness) -> None:
    deadline = _deadline(h.state)
    assert deadline is not None
    assert isinstance(deadline, m.DeadlineReached)
    h.run(deadline, deadline.at)


def test_a_repeating_coupon_covers_exactly_its_periods_and_the_preview_is_the_bill() -> None:
    h = Harness(ACTIVE)
    h.run(m.ApplyDiscount(SAVE20_TWICE, "op"), NOW)
    for _ in range(4):
        _, upcoming = m.upcoming_invoice(h.state)
        _renew(h)
        assert upcoming is not None
        assert h.invoices[-1].draft.total == upcoming.total  # the preview is the bill
    assert [_off(i) for i in h.invoices] == [980, 980, 0, 0]
    assert [c.kind for c in h.changes][0] == "discount_applied"


def test_one_discount_at_a_time_and_a_spent_one_makes_room() -> None:
    h = Harness(ACTIVE)
    once = Discount("WELCOME", None, 1000, "base", 1)
    h.run(m.ApplyDiscount(once, "op"), NOW)
    with pytest.raises(InvalidTransition, match="one at a time"):
        m.check(h.state, m.ApplyDiscount(SAVE20_TWICE, "op"), NOW)
    _renew(h)
    h.run(m.ApplyDiscount(SAVE20_TWICE, "op"), NOW)  # the first is spent
    _renew(h)
    assert [_off(i) for i in h.invoices] == [1000, 980]


def test_a_coupon_at_sign_up_covers_the_first_billed_period_after_the_trial() -> None:
    trial = replace(STATES[Status.TRIALING], discount=Discount("TRY", 50, None, "base", 1))
    h = Harness(trial)
    _renew(h)  # the trial ends: period 0 opens and is billed
    _renew(h)
    assert [(i.reason, _off(i)) for i in h.invoices] == [
        ("subscription_create", 2450),
        ("subscription_cycle", 0),
    ]


def test_overage_takes_the_discount_of_the_period_it_belongs_to() -> None:
    h = Harness(ACTIVE)
    h.run(m.ApplyDiscount(Discount("OVER", 10, None, "overage", 1), "op"), NOW)
    _renew(h)  # period 1 opens, covered (its base is not: the coupon is for overage)
    deadline = _deadline(h.state)
    assert isinstance(deadline, m.DeadlineReached)
    # The renewal closes period 1 with the overage the usage side priced.
    usage = (Line(LineKind.OVERAGE, "tokens", 10_000),)
    h.run(replace(deadline, usage=usage), deadline.at)
    _renew(h)  # period 2 closes uncovered
    assert [_off(i) for i in h.invoices] == [0, 1000, 0]


def test_a_fixed_amount_is_taken_once_per_period_across_base_and_overage() -> None:
    h = Harness(ACTIVE)
    h.run(m.ApplyDiscount(Discount("FIXED", None, 6000, "both", 1), "op"), NOW)
    _renew(h)  # period 1 opens: its base (4,900) takes 4,900 of the 6,000 (nothing to invoice)
    assert h.invoices == []
    assert h.state.discount is not None
    assert h.state.discount.amount_left == 1100
    deadline = _deadline(h.state)
    assert isinstance(deadline, m.DeadlineReached)
    usage = (Line(LineKind.OVERAGE, "tokens", 5_000),)
    h.run(replace(deadline, usage=usage), deadline.at)  # its overage takes the last 1,100
    _renew(h)
    # Period 2's invoice (its base, period 1's overage less 1,100), then period 3's (nothing off).
    assert [_off(i) for i in h.invoices] == [1100, 0]


def test_an_upgrade_in_a_covered_period_prorates_with_the_percentage() -> None:
    h = Harness(ACTIVE)
    h.run(m.ApplyDiscount(SAVE20_TWICE, "op"), NOW)
    _renew(h)  # period 1 covered
    before = h.state
    at = before.period[0] + timedelta(days=15)
    h.run(m.ChangePlan(PLANS["enterprise"], "user", "immediate"), at)
    change = h.invoices[-1]
    charge = sum(x.amount for x in change.draft.lines if x.kind in BASE_KINDS)
    assert _off(change) == charge * 20 // 100


@given(
    periods=st.integers(min_value=1, max_value=4),
    steps=st.lists(st.sampled_from(["renew", "carry", "pause_resume", "upgrade"]), max_size=12),
)
@settings(max_examples=60, deadline=None)
def test_a_repeating_coupon_discounts_exactly_n_periods_whatever_happens(
    periods: int, steps: list[str]
) -> None:
    h = Harness(ACTIVE)
    h.run(m.ApplyDiscount(Discount("N", 25, None, "base", periods), "op"), NOW)
    for name in steps:
        s = h.state
        if name == "renew" or (name == "pause_resume" and s.status is not Status.ACTIVE):
            _renew(h)
        elif name == "carry":
            h.state = _carried(s)
        elif name == "pause_resume":
            at = s.period[0] + timedelta(days=1)
            h.run(m.Pause("user"), at)
            h.run(m.Resume("user"), at + timedelta(days=2))
        elif s.plan.code == "standard" and s.status is Status.ACTIVE:
            h.run(m.ChangePlan(PLANS["enterprise"], "user", "immediate"), s.period[0])
    # Every period that opened (activation, renewal, resume), in order; the first `periods` of
    # them are covered, whatever happened between, and the invoices that bill them say so (a
    # period whose invoice the credit balance paid in full has no invoice to show it on).
    opened = [
        c.at
        for c in h.changes
        if c.kind in ("renewed", "resumed") or (c.kind == "plan_changed" and not c.with_invoice)
    ]
    covered = set(opened[:periods])
    assert h.state.discount is not None
    assert h.state.discount.used == min(periods, len(opened))
    for invoice in h.invoices:
        if invoice.reason in ("subscription_create", "subscription_cycle"):
            assert (_off(invoice) > 0) == (invoice.period[0] in covered), invoice
    # Every amount the machine billed, discounts and prorations included, is an int.
    for invoice in h.invoices:
        assert type(invoice.draft.total) is int
        assert all(type(x.amount) is int for x in invoice.draft.lines), invoice
