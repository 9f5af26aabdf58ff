"""Starting the workflows behind the two outboxes: Stripe inbox events (`stripe_event`) and
notification deliveries (`notification_delivery`).

An accepted Stripe event about an invoice the engine has is routed first (ADR 0024,
`billing.stripe_events.route_event`): one that echoes what the engine already knows is settled
without Temporal, one that needs action is one signal to its subscription; the rest (and every
replay, and every re-dispatch) start the `stripe_event` workflow.

Every start uses a business id with USE_EXISTING + REJECT_DUPLICATE, so starting twice (the
endpoint and the re-dispatcher racing, a replayed request) runs the work once. The re-dispatcher
is a plain loop, not a Temporal schedule: it exists for the times Temporal was unreachable.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from adapters import metrics
from adapters.db import notification_deliveries as deliveries_repo
from adapters.db import webhook_inbox as inbox
from adapters.db.session import Database
from billing.stripe_events import (
    EventHandling,
    EventRefs,
    KnownInvoice,
    Route,
    event_object,
    event_refs,
    handling_for,
    route_event,
)
from config import Settings
from workflows import notification_delivery, stripe_event
from workflows.notification_io import NotificationDeliveryInput
from workflows.shared_io import RetrySchedule
from workflows.stripe_event_io import StripeEventInput
from workflows.subscription_io import StripeEventSignal

log = logging.getLogger("billing.dispatch")


@dataclass(frozen=True)
class DispatchConfig:
    task_queue: str
    stripe_task_queue: str
    stripe_event_schedule: RetrySchedule
    notification_schedule: RetrySchedule
    start_timeout_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatchConfig:
        return cls(
            task_queue=settings.task_queue,
            stripe_task_queue=settings.stripe_task_queue,
            stripe_event_schedule=RetrySchedule(
                settings.webhook_max_attempts,
                settings.webhook_initial_backoff_seconds,
                settings.webhook_max_backoff_seconds,
            ),
            notification_schedule=RetrySchedule(
                settings.notification_max_attempts,
                settings.notification_initial_backoff_seconds,
                settings.notification_max_backoff_seconds,
            ),
            start_timeout_seconds=settings.webhook_dispatch_timeout_seconds,
        )


@dataclass(frozen=True)
class Accepted:
    """What the webhook endpoint learnt about an event it just stored: its type, what it
    points at (only for events that may be routed), and the engine's invoice it names, read
    by the insert itself (`webhook_inbox.store_event`)."""

    event_type: str
    refs: EventRefs | None = None
    known: KnownInvoice | None = None

    @staticmethod
    def refs_of(event: Mapping[str, Any]) -> EventRefs | None:
        """The references routing needs, for events that may be routed (ADR 0024)."""
        event_type = str(event.get("type"))
        if handling_for(event_type) is not EventHandling.SIGNAL:
            return None
        return event_refs(event_type, event_object(event))


class Dispatcher:
    def __init__(self, db: Database, client: Client, config: DispatchConfig) -> None:
        self._db = db
        self._client = client
        self._config = config
        self._settlements: Settler | None = None

    async def start_stripe_event(self, event_id: str, replay: int = 0) -> None:
        """Start (or find) the event's workflow; raises when Temporal cannot be reached."""
        try:
            await asyncio.wait_for(
                self._client.start_workflow(
                    stripe_event.StripeEventWorkflow.run,
                    StripeEventInput(
                        event_id=event_id,
                        schedule=self._config.stripe_event_schedule,
                        stripe_task_queue=self._config.stripe_task_queue,
                        replay=replay,
                    ),
                    id=stripe_event.workflow_id(event_id, replay),
                    task_queue=self._config.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    static_summary=f"Stripe event {event_id}",
                ),
                timeout=self._config.start_timeout_seconds,
            )
        except WorkflowAlreadyStartedError:
            pass  # already ran to completion under this id: nothing to start

    async def dispatch_stripe_event(
        self, event_id: str, replay: int = 0, accepted: Accepted | None = None
    ) -> bool:
        """Route the event (when it was just accepted and is no replay), else start the
        workflow; False (row left `received` for the re-dispatcher) when Temporal or Postgres
        is unavailable. Never raises for their trouble. The workflow's first step marks the
        row `dispatched`; until then the re-dispatcher may start the same id again, a no-op."""
        try:
            if replay == 0 and accepted is not None and await self._route(event_id, accepted):
                return True
            await self.start_stripe_event(event_id, replay)
        except Exception as exc:  # noqa: BLE001 - any Temporal failure means "later"
            log.warning("could not start stripe_event for %s: %r", event_id, exc)
            return False
        return True

    async def _route(self, event_id: str, accepted: Accepted) -> bool:
        """True when the event was settled (no action) or signalled to its subscription;
        False when it takes the workflow. A duplicate signal (the re-dispatcher racing this)
        is applied once: the subscription remembers the event ids it has applied."""
        event_type, refs, known = accepted.event_type, accepted.refs, accepted.known
        if refs is None or known is None or known.subscription_id is None:
            return False
        routing = route_event(event_type, refs, known)
        if routing.route is Route.WORKFLOW:
            return False
        if routing.route is Route.SIGNAL:
            signal = _signal(event_id, event_type, refs, known, reread=routing.reread)
            target = stripe_event.subscription_workflow_id(known.subscription_id)
            try:
                await asyncio.wait_for(
                    self._client.get_workflow_handle(target).signal(
                        stripe_event.SUBSCRIPTION_SIGNAL, signal
                    ),
                    timeout=self._config.start_timeout_seconds,
                )
            except RPCError as error:
                if error.status is RPCStatusCode.NOT_FOUND:
                    return False  # not running: the workflow records what became of it
                raise
        self._settler().add(
            event_type, inbox.Settlement(event_id, UUID(known.tenant_id), routing.detail)
        )
        return True

    def _settler(self) -> Settler:
        if self._settlements is None:
            self._settlements = Settler(self._db)
        return self._settlements

    async def settled(self) -> None:
        """Wait until every routed event handed to the settler has been written (or failed)."""
        if self._settlements is not None:
            await self._settlements.drain()

    async def start_notification(self, delivery_id: str) -> None:
        try:
            await asyncio.wait_for(
                self._client.start_workflow(
                    notification_delivery.NotificationDeliveryWorkflow.run,
                    NotificationDeliveryInput(delivery_id, self._config.notification_schedule),
                    id=notification_delivery.workflow_id(delivery_id),
                    task_queue=self._config.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                    static_summary=f"notification delivery {delivery_id}",
                ),
                timeout=self._config.start_timeout_seconds,
            )
        except WorkflowAlreadyStartedError:
            pass

    async def redispatch_once(self, *, batch: int, min_age_seconds: float) -> int:
        """One bounded pass: start workflows for inbox rows still `received` and deliveries never
        attempted. Returns how many were started; stops at the first Temporal failure."""
        started = 0
        async with self._db.transaction() as conn:
            # The rows stay locked (SKIP LOCKED for other dispatchers) until the pass commits.
            for event_id, replay in await inbox.claim_undispatched(
                conn, limit=batch, min_age_seconds=min_age_seconds
            ):
                try:
                    await self.start_stripe_event(event_id, replay)
                except Exception as exc:  # noqa: BLE001
                    log.warning("re-dispatch paused, Temporal unavailable: %r", exc)
                    return started
                await inbox.mark_dispatched(conn, event_id)
                started += 1
        async with self._db.transaction() as conn:
            pending = await deliveries_repo.claim_unstarted(
                conn, limit=batch, min_age_seconds=min_age_seconds
            )
            for delivery_id in pending:
                try:
                    await self.start_notification(str(delivery_id))
                except Exception as exc:  # noqa: BLE001
                    log.warning("re-dispatch paused, Temporal unavailable: %r", exc)
                    return started
                await deliveries_repo.mark_started(conn, delivery_id)
                started += 1
        return started

    async def run(
        self, stop: asyncio.Event, *, interval_seconds: float, batch: int, min_age_seconds: float
    ) -> None:
        """Re-dispatch until `stop` is set; a full batch goes again at once."""
        while not stop.is_set():
            try:
                started = await self.redispatch_once(batch=batch, min_age_seconds=min_age_seconds)
            except Exception:  # the database may be down too; the loop must survive it
                log.exception("re-dispatch pass failed")
                started = 0
            if started >= batch:
                continue
            try:
                await asyncio.wait_for(stop.wait(), timeout=interval_seconds)
            except TimeoutError:
                pass


class Settler:
    """Marks routed events `processed` in the background, many to a statement (ADR 0024).

    Routing does not wait for it: the event was settled (no action) or signalled before it is
    added, and the row only records that. A settlement still buffered when the process stops,
    or whose statement fails, leaves the row `received`: the re-dispatcher starts the event's
    workflow, which routes it again (an echo is settled again; a signal the subscription has
    applied is applied once, by event id). At most `concurrency` statements are in flight, each
    taking up to `batch` of what has gathered meanwhile: one statement per event was most of
    the database work of a billing day's webhooks."""

    def __init__(self, db: Database, *, batch: int = 500, concurrency: int = 2) -> None:
        self._db = db
        self._batch = batch
        self._concurrency = concurrency
        self._pending: list[tuple[str, inbox.Settlement]] = []
        self._flushes: set[asyncio.Task[None]] = set()

    def add(self, event_type: str, settlement: inbox.Settlement) -> None:
        self._pending.append((event_type, settlement))
        if len(self._flushes) < self._concurrency:
            task = asyncio.create_task(self._flush(), name="webhook-settle")
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        while self._pending:
            taken, self._pending = self._pending[: self._batch], self._pending[self._batch :]
            try:
                pool = await self._db.raw_pool("dispatch")  # never the pool requests wait for
                async with pool.acquire() as connection:
                    await inbox.settle_routed(connection, [s for _, s in taken])
            except Exception as exc:  # noqa: BLE001 - the re-dispatcher settles them later
                log.warning("%d routed events left to the re-dispatcher: %r", len(taken), exc)
                continue
            for event_type, _ in taken:
                metrics.WEBHOOKS_PROCESSED.labels(event_type, inbox.PROCESSED).inc()

    async def drain(self) -> None:
        while self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)


def _signal(
    event_id: str, event_type: str, refs: EventRefs, known: KnownInvoice, *, reread: bool
) -> StripeEventSignal:
    return StripeEventSignal(
        event_id=event_id,
        event_type=event_type,
        stripe_object_id=refs.object_id,
        invoice_id=known.invoice_id,
        stripe_invoice_id=refs.stripe_invoice_id,
        invoice_status=refs.invoice_status,
        amount_paid=refs.amount_paid,
        hosted_invoice_url=refs.hosted_invoice_url,
        stripe_payment_method_id=refs.stripe_payment_method_id,
        failure_message=refs.failure_message,
        reread=reread,
    )


@dataclass(frozen=True)
class Replayed:
    event_id: str
    replay: int
    workflow_id: str
    # False: Temporal unavailable; the re-dispatcher starts the same id later.
    started: bool


# How long a dispatch worker waits for work before it stops.
IDLE_SECONDS = 2.0
# How long closing the queue waits for routed events' rows to be written.
SETTLE_ON_CLOSE_SECONDS = 5.0


class DispatchQueue:
    """Starts the stripe_event workflows of accepted webhooks in the background, at most
    `concurrency` starts in flight (ADR 0004). Under a burst, one task per request racing for
    Temporal timed starts out and slowed acceptance; a bounded queue keeps both steady. The
    event is committed before it is queued: one that finds the queue full, or is still queued
    when the process stops, is started by the worker's re-dispatcher."""

    def __init__(self, dispatcher: Dispatcher, concurrency: int = 64, capacity: int = 20_000):
        self._dispatcher = dispatcher
        self._concurrency = concurrency
        self._queue: asyncio.Queue[tuple[str, int, Accepted | None]] = asyncio.Queue(capacity)
        self._tasks: list[asyncio.Task[None]] = []

    def submit(self, event_id: str, replay: int, accepted: Accepted | None = None) -> bool:
        """Queue the dispatch (`accepted`: what acceptance learnt, for routing); False when the
        queue is full (the re-dispatcher will start it)."""
        # Workers stop after IDLE_SECONDS without work and are started again on demand, so an
        # idle process (or a test's app that is gone) keeps no task waiting forever.
        self._tasks = [t for t in self._tasks if not t.done()]
        while len(self._tasks) < self._concurrency:
            self._tasks.append(
                asyncio.create_task(self._work(), name=f"webhook-dispatch-{len(self._tasks)}")
            )
        try:
            self._queue.put_nowait((event_id, replay, accepted))
        except asyncio.QueueFull:
            log.warning("dispatch queue full: %s left to the re-dispatcher", event_id)
            return False
        return True

    async def _work(self) -> None:
        while True:
            try:
                event_id, replay, accepted = await asyncio.wait_for(self._queue.get(), IDLE_SECONDS)
            except TimeoutError:
                return
            try:
                await self._dispatcher.dispatch_stripe_event(event_id, replay, accepted)
            finally:
                self._queue.task_done()

    async def drain(self) -> None:
        """Wait until every queued start has been tried and every routed event's row written
        (tests, shutdown)."""
        await self._queue.join()
        await self._dispatcher.settled()

    async def close(self) -> None:
        """Stop routing (what is still queued, the re-dispatcher starts) and write the rows of
        what was routed, for a bounded time (what is not written, the re-dispatcher routes
        again)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        try:
            await asyncio.wait_for(self._dispatcher.settled(), SETTLE_ON_CLOSE_SECONDS)
        except TimeoutError:
            log.warning("routed events left unsettled at shutdown: the re-dispatcher settles them")


async def replay_stripe_events(
    db: Database,
    dispatcher: Dispatcher,
    event_ids: list[str] | None,
    *,
    actor: str,
    reason: str | None = None,
) -> list[Replayed]:
    """Replay the named inbox events (None: every dead-lettered one), audited per event.

    The row goes back to `received` with the next replay number n, committed first; then
    `stripe-event:{id}:replay:{n}` starts. The subscription workflow remembers event ids it has
    applied, so replaying an event that was already applied changes nothing."""
    from adapters.db.audit import record_audit

    async with db.transaction() as conn:
        prepared = await inbox.prepare_replay(conn, event_ids)
        for event_id, replay, status in prepared:
            await record_audit(
                conn,
                actor=actor,
                action="webhook_event.replayed",
                subject_type="webhook_event",
                subject_id=event_id,
                tenant_id=None,
                before={"status": status, "replay": replay - 1},
                after={"status": "received", "replay": replay},
                details={
                    "replay": replay,
                    "workflow_id": stripe_event.workflow_id(event_id, replay),
                    "reason": reason,
                },
            )
    results = []
    for event_id, replay, _ in prepared:
        started = await dispatcher.dispatch_stripe_event(event_id, replay)
        results.append(
            Replayed(event_id, replay, stripe_event.workflow_id(event_id, replay), started)
        )
    return results
