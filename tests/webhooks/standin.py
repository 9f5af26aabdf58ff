"""A stand-in `subscription` workflow for webhook tests: records the `stripe_event` signals it
applies, at most once per event id (what the real workflow promises), and nothing else.
Kept in its own module with no side effects so the workflow sandbox can import it."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.notify import INVOICE_PAID, notify
    from workflows.subscription_io import StripeEventSignal


@dataclass(frozen=True)
class StandinInput:
    subscription_id: str


@dataclass(frozen=True)
class StandinState:
    applied: list[StripeEventSignal] = field(default_factory=list)
    # Per invoice: the status as last applied; a paid invoice stays paid.
    invoice_status: dict[str, str] = field(default_factory=dict)
    # Every signal received, duplicates included (a benchmark counts what was sent twice).
    deliveries: int = 0


@workflow.defn(name="subscription")
class StandinSubscriptionWorkflow:
    def __init__(self) -> None:
        self._applied: list[StripeEventSignal] = []
        self._seen: set[str] = set()
        self._status: dict[str, str] = {}
        self._deliveries = 0

    @workflow.run
    async def run(self, input: StandinInput) -> None:
        await workflow.wait_condition(lambda: False)

    @workflow.signal(name="stripe_event")
    def stripe_event(self, signal: StripeEventSignal) -> None:
        self._deliveries += 1
        if signal.event_id in self._seen:
            return
        self._seen.add(signal.event_id)
        self._applied.append(signal)
        key = signal.stripe_invoice_id
        if key and signal.invoice_status and self._status.get(key) != "paid":
            self._status[key] = signal.invoice_status

    @workflow.query(name="standin_state")
    def state(self) -> StandinState:
        return StandinState(list(self._applied), dict(self._status), self._deliveries)

    @workflow.update(name="standin_applied")
    async def applied(self, at_least: int) -> int:
        """Answers once at least `at_least` events were applied (how many): a benchmark waits
        on it instead of polling, so its wait costs the server and the worker nothing while
        the events it measures are being applied."""
        await workflow.wait_condition(lambda: len(self._applied) >= at_least)
        return len(self._applied)


@dataclass(frozen=True)
class NotifyInput:
    tenant_id: str
    invoice_id: str


@workflow.defn(name="test_notifying")
class NotifyingWorkflow:
    """What a subscription or dunning workflow does to tell the tenant something."""

    @workflow.run
    async def run(self, input: NotifyInput) -> list[str]:
        result = await notify(
            input.tenant_id,
            INVOICE_PAID,
            f"{INVOICE_PAID}:{input.invoice_id}",
            {"invoice_id": input.invoice_id},
        )
        return result.delivery_ids
