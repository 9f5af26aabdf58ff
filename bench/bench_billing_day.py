"""Billing day: N subscriptions renew at the same instant, on the Temporal dev server with the
engine's worker (its workflows, its Postgres activities on embedded PostgreSQL, its Stripe
activities on the rate-limited queue), against the in-memory Stripe fake with a latency model
behind the engine's request pacer (ADR 0025).

Each phase gets a fresh dev server and database, and the same subscriptions:
  - 25/s, fairness on    the engine as `billing dev` runs it, at Stripe's test-mode limit
  - 25/s, fairness off   the same, with the server's fairness flag off (ADR 0014)
  - 100/s, fairness on   Stripe's live-mode limit: here the engine may be the bound

Tenants are skewed: one holds half the subscriptions, the rest follow a Zipf-like spread down to
one subscription each. The engine bills one live subscription per tenant; a large tenant on a
billing day (a platform billing its own customers through one tenant) is modelled as many
subscriptions sharing its tenant id, which is the fairness key. For that the bench drops the
one-live-subscription index in its own throwaway database, and gives every subscription its own
Stripe customer. Everything the renewal does is keyed by subscription.

Every subscription starts mid-life, as the run after its last continue-as-new would (its carry:
active, paid up, a card on file), with its period ending at the same instant T a little after
the last start; so what is measured is the renewal, not the sign-up.

Printed per phase: invoices per (subscription, period) and Stripe keys (exactly once), Stripe
requests per one-second window (max and p99) beside the limit, wall time from T until the last
invoice is paid beside the rate-bound minimum (requests / limit), renewals per second, time to
"invoice paid" for small tenants and the large one (p50/p99), the Temporal cost of one renewal
(from a sample of histories) beside a workflow running as many no-op activities, and RSS.

    .venv/bin/python bench/bench_billing_day.py [--subscriptions N] [--limits 25,100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]

from baseline_workflow import NoopActivities, noop  # noqa: E402

SAMPLE_HISTORIES = 20
LOCAL_ACTIVITY = "marker core_local_activity"
PLAN = "standard"


@dataclass
class Phase:
    label: str
    limit: float
    fairness: bool


@dataclass
class Result:
    phase: Phase
    n: int
    invoices: int = 0
    duplicate_periods: int = 0
    keys: int = 0
    unique_keys: int = 0
    charges: int = 0
    requests: int = 0
    max_per_second: int = 0
    p99_per_second: int = 0
    wall_s: float = 0.0
    first_request_s: float = 0.0
    small_p50: float = 0.0
    small_p99: float = 0.0
    large_p50: float = 0.0
    large_p99: float = 0.0
    cost: Counter[str] = field(default_factory=Counter)
    baseline_cost: Counter[str] = field(default_factory=Counter)
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0
    server_rss_end_mb: float = 0.0
    # From the instant until the last invoice is paid: CPU used, as a share of one core.
    cpu_share: float = 0.0
    server_cpu_share: float = 0.0
    # Garbage collections of the oldest generation in that window, and the longest pause.
    full_collections: int = 0
    longest_gc_pause_s: float = 0.0


def tenant_sizes(n: int) -> list[int]:
    """One tenant with half of `n`; the other half over tenants of Zipf-like sizes (the i-th
    about 1/i of the largest), down to one subscription each."""
    large = n // 2
    rest = n - large
    sizes = [large]
    i = 1
    while rest > 0:
        size = max(1, min(rest, round(rest / (2 * i)) if i < 8 else 1))
        sizes.append(size)
        rest -= size
        i += 1
    return sizes


def small_threshold(n: int) -> int:
    """Tenants with at most this many subscriptions are "small" (1 % of the billing day)."""
    return max(1, n // 100)


def _cpu_seconds(pid: int | str = "self") -> float:
    """User plus system CPU time of a process so far (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GcPauses:
    """Counts this process's full garbage collections and times the longest pause."""

    def __init__(self) -> None:
        self.full = 0
        self.longest = 0.0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        pause = time.perf_counter() - self._began
        self.longest = max(self.longest, pause)
        if info["generation"] == 2:
            self.full += 1

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def _rss_mb(pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _quantile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


async def run_phase(
    phase: Phase,
    postgres: Any,
    base: Path,
    n: int,
    latency_ms: tuple[float, float],
    seed: int,
    cache: int,
) -> Result:
    from alembic import command
    from sqlalchemy import insert, text
    from temporalio.client import Client
    from temporalio.worker import Worker

    from adapters.db.migrate import alembic_config
    from adapters.db.plans import latest_plan, sync_catalog
    from adapters.db.session import Database
    from adapters.db.tables import subscriptions, tenants
    from adapters.stripe_fake import FakeStripeGateway
    from adapters.stripe_pacing import RequestPacer
    from adapters.temporal import start_subscription
    from billing.catalog import load_catalog
    from billing.periods import add_months, period_bounds
    from config import WORKER_ROLE, WORKER_SCOPED_ROLE, Settings
    from devstack.temporal import TemporalDevServer
    from tests.harness import free_port
    from worker import build_workers, freeze_startup_heap
    from workflows.subscription_io import (
        PaymentMethodResult,
        PlanSnapshot,
        SubscriptionCarry,
        SubscriptionInput,
    )

    result = Result(phase, n)
    rng = random.Random(seed)
    name = f"billing_day_{phase.label.replace('/', '').replace(' ', '_').replace(',', '')}"
    postgres.ensure_database(name)
    url = postgres.url(name)
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
    settings = Settings(database_url=url)
    admin = Database(url, pool_size=2)
    async with admin.transaction() as conn:
        # See the module docstring: the large tenant holds half the subscriptions.
        await conn.execute(text("DROP INDEX uq_subscriptions_tenant_id_live"))
        await sync_catalog(conn, load_catalog(settings.catalog_path))
        plan = await latest_plan(conn, PLAN)
    assert plan is not None
    snapshot = PlanSnapshot(str(plan.id), plan.code, plan.version, plan.definition)

    # --- who renews: tenants, subscriptions, Stripe customers with a card -------------------
    sizes = tenant_sizes(n)
    owners: list[tuple[str, int]] = []  # (tenant id, its size) per subscription
    tenant_rows = []
    for i, size in enumerate(sizes):
        tid = str(uuid.UUID(int=rng.getrandbits(128)))
        tenant_rows.append({"id": tid, "name": f"Bench tenant {i}"})
        owners += [(tid, size)] * size
    rng.shuffle(owners)  # renewals of every tenant interleave in the instant's queue
    gateway = FakeStripeGateway()
    # T: the instant every period ends, a little after the last workflow has started.
    at = (datetime.now(UTC) + timedelta(seconds=30 + n / 50)).replace(microsecond=0)
    anchor = add_months(at, -1)
    assert period_bounds(anchor, "month", 0)[1] == at, "pick an instant whose day exists"
    subs: list[tuple[str, SubscriptionInput]] = []
    for k, (tid, _size) in enumerate(owners):
        sid = str(uuid.UUID(int=rng.getrandbits(128)))
        customer = await gateway.ensure_customer(tid, None, f"sub {k}", f"customer:{sid}")
        card = await gateway.attach_payment_method(
            customer.id, "pm_card_visa", f"payment-method:{sid}:1"
        )
        carry = SubscriptionCarry(
            status="active",
            plan=snapshot,
            customer_id=customer.id,
            anchor=anchor.isoformat(),
            period_index=0,
            trial_end=None,
            cancel_at_period_end=False,
            canceled_at=None,
            paused_at=None,
            resume_at=None,
            pending_plan=None,
            credit_balance=0,
            version=1,
            invoice_version=1,
            change_seq=1,
            has_payment_method=True,
            # Business time is wall time (production's clock).
            wall_origin=anchor.isoformat(),
            business_origin=anchor.isoformat(),
            invoices_issued=1,
            card=PaymentMethodResult(
                card.payment_method_id, card.brand, card.last4, card.exp_month, card.exp_year
            ),
        )
        subs.append(
            (
                tid,
                SubscriptionInput(
                    subscription_id=sid,
                    tenant_id=tid,
                    tenant_name=f"sub {k}",
                    tenant_email=None,
                    plan=snapshot,
                    interval="month",
                    stripe_task_queue="bench-stripe",
                    actor="bench",
                    stripe_customer_id=customer.id,
                    carry=carry,
                ),
            )
        )
    async with admin.transaction() as conn:
        await conn.execute(insert(tenants), tenant_rows)
        for chunk in range(0, n, 2_000):
            await conn.execute(
                insert(subscriptions),
                [
                    {
                        "id": s.subscription_id, "tenant_id": tid, "plan_id": plan.id,
                        "plan_code": PLAN, "interval": "month", "currency": "usd",
                        "status": "active", "workflow_id": f"subscription:{s.subscription_id}",
                        "current_period_start": anchor, "current_period_end": at,
                        "clock_wall_origin": anchor, "clock_business_origin": anchor,
                    }
                    for tid, s in subs[chunk : chunk + 2_000]
                ],
            )  # fmt: skip
    # From here on every Stripe request waits its turn and takes its round trip.
    low, high = latency_ms
    gateway.model_network(
        latency=lambda: rng.uniform(low, high) / 1000, pacer=RequestPacer(phase.limit)
    )

    # --- the engine --------------------------------------------------------------------------
    temporal = TemporalDevServer(free_port(), fairness=phase.fairness)
    temporal.start(log_path=base / f"temporal-{name}.log")
    db = Database(
        settings.role_url(WORKER_ROLE),
        pool_size=settings.db_pool_size,
        scoped_role=WORKER_SCOPED_ROLE,
    )
    running: list[Worker] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        client = await Client.connect(temporal.address)
        result.rss_start_mb = _rss_mb()
        workers = build_workers(
            client,
            db=db,
            gateway=gateway,
            task_queue="bench",
            stripe_task_queue="bench-stripe",
            stripe_activities_per_second=phase.limit,
            stripe_requests_per_second=phase.limit,
            max_cached_workflows=cache,
        )
        baseline_worker = Worker(
            client, task_queue="bench-baseline", workflows=[NoopActivities], activities=[noop]
        )
        running = [*workers, baseline_worker]
        freeze_startup_heap()  # as run_worker does
        tasks = [asyncio.create_task(w.run()) for w in running]

        handles = []
        started = time.perf_counter()
        for chunk in range(0, n, 200):
            handles += await asyncio.gather(
                *(
                    start_subscription(client, inp, task_queue="bench")
                    for _, inp in subs[chunk : chunk + 200]
                )
            )
        print(  # noqa: T201
            f"  {phase.label}: {n} subscriptions started in {time.perf_counter() - started:.1f} s;"
            f" all renew at {at:%H:%M:%S}",
            flush=True,
        )
        if datetime.now(UTC) >= at:
            print("  (the instant passed before the last start: renewals are staggered)")  # noqa: T201
        await asyncio.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()))
        gateway.requests.clear()
        gateway.requests.append((time.monotonic_ns(), "instant"))
        cpu, server_cpu = _cpu_seconds(), _cpu_seconds(temporal.pid or 0)
        with GcPauses() as pauses:
            rows = await _wait_paid(admin, n, at, phase)
        window = (datetime.now(UTC) - at).total_seconds()
        result.cpu_share = (_cpu_seconds() - cpu) / window
        result.server_cpu_share = (_cpu_seconds(temporal.pid or 0) - server_cpu) / window
        result.full_collections, result.longest_gc_pause_s = pauses.full, pauses.longest
        result.rss_end_mb = _rss_mb()
        result.server_rss_end_mb = _rss_mb(temporal.pid) if temporal.pid else float("nan")

        # --- exactly once --------------------------------------------------------------------
        async with admin.transaction() as conn:
            counts = (
                await conn.execute(
                    text(
                        "SELECT count(*), count(DISTINCT (subscription_id, period_start)) "
                        "FROM invoices"
                    )
                )
            ).one()
        result.invoices, distinct = counts
        result.duplicate_periods = result.invoices - distinct
        keys = gateway.keys_for("create_invoice")
        result.keys, result.unique_keys = len(keys), len(set(keys))
        result.charges = len(gateway.charges)

        # --- the Stripe rate -------------------------------------------------------------------
        origin = gateway.requests[0][0]
        sent = [t for t, method in gateway.requests[1:]]
        result.requests = len(sent)
        result.first_request_s = (min(sent) - origin) / 1e9 if sent else float("nan")
        windows = Counter((t - origin) // 1_000_000_000 for t in sent)
        per_second = [windows.get(w, 0) for w in range(max(windows) + 1)] if windows else [0]
        result.max_per_second = max(per_second)
        result.p99_per_second = int(_quantile([float(c) for c in per_second], 0.99))

        # --- time to paid, by tenant size ------------------------------------------------------
        size_of = dict(owners)
        small, large = [], []
        for tenant_id, paid_at in rows:
            waited = (paid_at - at).total_seconds()
            size = size_of[str(tenant_id)]
            if size == sizes[0]:
                large.append(waited)
            elif size <= small_threshold(n):
                small.append(waited)
        result.wall_s = max((paid_at - at).total_seconds() for _, paid_at in rows)
        result.small_p50, result.small_p99 = _quantile(small, 0.5), _quantile(small, 0.99)
        result.large_p50, result.large_p99 = _quantile(large, 0.5), _quantile(large, 0.99)

        # --- the Temporal cost of one renewal ---------------------------------------------------
        sample = rng.sample(handles, min(SAMPLE_HISTORIES, len(handles)))
        for handle in sample:
            result.cost += await _history_counts(client, handle.id, handle.first_execution_run_id)
        for key in list(result.cost):
            result.cost[key] = result.cost[key] / len(sample)  # type: ignore[assignment]
        activities = round(
            result.cost["EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"] + result.cost[LOCAL_ACTIVITY]
        )
        base_handle = await client.start_workflow(
            NoopActivities.run,
            activities,
            id=f"baseline-noop:{uuid.uuid4()}",
            task_queue="bench-baseline",
        )
        await base_handle.result()
        result.baseline_cost = await _history_counts(
            client, base_handle.id, base_handle.first_execution_run_id
        )
    finally:
        # Workers first (also on Ctrl-C), then what they use, then the server, by its pid.
        for w in running:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(w.shutdown(), timeout=30)
        await asyncio.gather(*tasks, return_exceptions=True)
        await db.dispose()
        await admin.dispose()
        temporal.stop()
    return result


async def _wait_paid(admin: Any, n: int, at: datetime, phase: Phase) -> list[tuple[Any, datetime]]:
    """Poll until every renewal invoice is paid; prints progress every 15 s."""
    from sqlalchemy import text

    paid = "FROM invoices WHERE billing_reason = 'subscription_cycle' AND status = 'paid'"
    count, query = text(f"SELECT count(*) {paid}"), text(f"SELECT tenant_id, paid_at {paid}")
    statuses = text("SELECT status, count(*) FROM invoices GROUP BY status ORDER BY status")
    last_print = time.monotonic()
    deadline = time.monotonic() + 4 * 3600
    while True:
        async with admin.transaction() as conn:
            done = (await conn.execute(count)).scalar_one()
            if done >= n:  # the rows once, at the end: the engine shares this process's CPU
                return [(r.tenant_id, r.paid_at) for r in (await conn.execute(query)).all()]
        if time.monotonic() > deadline:
            raise SystemExit(f"{phase.label}: only {done} of {n} paid after 4 hours")
        if time.monotonic() - last_print >= 15:
            elapsed = (datetime.now(UTC) - at).total_seconds()
            async with admin.transaction() as conn:
                by_status = ", ".join(f"{s} {c}" for s, c in (await conn.execute(statuses)).all())
            print(  # noqa: T201
                f"  {phase.label}: {done}/{n} renewals paid after {elapsed:.0f} s "
                f"(invoices: {by_status or 'none yet'})",
                flush=True,
            )
            last_print = time.monotonic()
        await asyncio.sleep(1)


async def _history_counts(client: Any, workflow_id: str, run_id: str | None) -> Counter[str]:
    """Event counts by type of one run (the renewal: the run ends in continue-as-new)."""
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import WorkflowExecutionStatus

    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    for _ in range(600):  # the run goes on after "paid" (projections, notice): wait for its end
        if (await handle.describe()).status != WorkflowExecutionStatus.RUNNING:
            break
        await asyncio.sleep(0.5)
    counts: Counter[str] = Counter()
    for event in (await handle.fetch_history()).events:
        counts[EventType.Name(event.event_type)] += 1
        counts["events"] += 1
        if event.HasField("marker_recorded_event_attributes"):
            # Local activities and patch markers are both markers.
            counts[f"marker {event.marker_recorded_event_attributes.marker_name}"] += 1
    return counts


def report(results: list[Result], latency_ms: tuple[float, float]) -> None:
    out = print
    n = results[0].n
    sizes = tenant_sizes(n)
    small = sum(1 for s in sizes if s <= small_threshold(n))
    out(  # noqa: T201
        f"\nbilling day: {n} subscriptions, {len(sizes)} tenants (the large one holds "
        f"{sizes[0]}; {small} small ones hold at most {small_threshold(n)} each), Stripe fake "
        f"{latency_ms[0]:.0f}-{latency_ms[1]:.0f} ms a request"
    )
    head = f"{'':<34}" + "".join(f"{r.phase.label:>22}" for r in results)
    out(head)  # noqa: T201

    def row(label: str, cell: Callable[[Result], str]) -> None:
        out(f"{label:<34}" + "".join(f"{cell(r):>22}" for r in results))  # noqa: T201

    def minimum(r: Result) -> float:
        return r.requests / r.phase.limit

    row("invoices (expected N)", lambda r: f"{r.invoices}")
    row("  periods invoiced twice", lambda r: f"{r.duplicate_periods}")
    row("  Stripe invoice keys, unique", lambda r: f"{r.unique_keys}/{r.keys}")
    row("  charges", lambda r: f"{r.charges}")
    row("Stripe requests", lambda r: f"{r.requests}")
    row("  per 1 s window: max / limit", lambda r: f"{r.max_per_second} / {r.phase.limit:g}")
    row("  per 1 s window: p99", lambda r: f"{r.p99_per_second}")
    row("  within the limit", lambda r: "yes" if r.max_per_second <= r.phase.limit else "NO")
    row("wall time, s", lambda r: f"{r.wall_s:.1f}")
    row("  rate-bound minimum, s", lambda r: f"{minimum(r):.1f}")
    row("  ratio (bar <= 1.2 at 25/s)", lambda r: f"{r.wall_s / minimum(r):.2f}")
    row("  renewals per second", lambda r: f"{r.n / r.wall_s:.1f}")
    row("  first Stripe request after T, s", lambda r: f"{r.first_request_s:.2f}")
    row("time to paid, small: p50 / p99 s", lambda r: f"{r.small_p50:.0f} / {r.small_p99:.0f}")
    row("time to paid, large: p50 / p99 s", lambda r: f"{r.large_p50:.0f} / {r.large_p99:.0f}")
    for key, label in (
        ("EVENT_TYPE_ACTIVITY_TASK_SCHEDULED", "per renewal: activities"),
        (LOCAL_ACTIVITY, "  local activities"),
        ("EVENT_TYPE_WORKFLOW_TASK_COMPLETED", "  workflow tasks"),
        ("EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW", "  continue-as-new"),
        ("events", "  history events"),
    ):
        row(label, lambda r, key=key: f"{r.cost[key]:.1f}")
    wft = "EVENT_TYPE_WORKFLOW_TASK_COMPLETED"
    row("  no-op baseline: workflow tasks", lambda r: f"{r.baseline_cost[wft]:.1f}")
    row("  no-op baseline: history events", lambda r: f"{r.baseline_cost['events']:.1f}")
    row("worker process RSS start/end MB", lambda r: f"{r.rss_start_mb:.0f} / {r.rss_end_mb:.0f}")
    row("dev server RSS at end, MB", lambda r: f"{r.server_rss_end_mb:.0f}")
    row(
        "CPU, cores: worker process / server",
        lambda r: f"{r.cpu_share:.2f} / {r.server_cpu_share:.2f}",
    )
    row(
        "  full GCs / longest GC pause, s",
        lambda r: f"{r.full_collections} / {r.longest_gc_pause_s:.2f}",
    )
    on = next((r for r in results if r.phase.fairness and r.phase.limit == 25), None)
    off = next((r for r in results if not r.phase.fairness and r.phase.limit == 25), None)
    if on and off:
        ratio = on.small_p99 / off.small_p99 if off.small_p99 else float("nan")
        out(  # noqa: T201
            f"\nsmall tenants' p99 time to paid at 25/s: fairness on {on.small_p99:.0f} s, off "
            f"{off.small_p99:.0f} s: ratio {ratio:.2f} (bar <= 0.33)"
        )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=2_000)
    parser.add_argument("--limits", default="25,100", help="Stripe requests per second")
    parser.add_argument("--latency-ms", default="50,150", help="Stripe fake latency range")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--no-fairness-off", action="store_true", help="skip the fairness-off comparison"
    )
    parser.add_argument(
        "--cache",
        type=int,
        default=0,
        help="workflows the worker keeps cached (BILLING_WORKER_MAX_CACHED_WORKFLOWS); "
        "default: the number of subscriptions, at least 1,000",
    )
    args = parser.parse_args()
    n = args.subscriptions
    limits = [float(x) for x in args.limits.split(",")]
    low, high = (float(x) for x in args.latency_ms.split(","))
    phases = [Phase(f"{limits[0]:g}/s fair", limits[0], True)]
    if not args.no_fairness_off:
        phases.append(Phase(f"{limits[0]:g}/s unfair", limits[0], False))
    phases += [Phase(f"{limit:g}/s fair", limit, True) for limit in limits[1:]]

    from devstack.postgres import EmbeddedPostgres
    from tests.harness import free_port

    base = Path(tempfile.mkdtemp(prefix="bench-billing-day-"))
    postgres = EmbeddedPostgres(base / "pg", free_port(), fsync=False)
    results = []
    try:
        postgres.start()
        for phase in phases:
            print(f"== phase {phase.label}", flush=True)  # noqa: T201
            results.append(
                await run_phase(
                    phase,
                    postgres,
                    base,
                    n,
                    (low, high),
                    args.seed,
                    args.cache or max(1_000, n),
                )  # fmt: skip
            )
            report(results[-1:], (low, high))  # each phase as it ends: a full run takes long
    finally:
        postgres.stop()
        shutil.rmtree(base, ignore_errors=True)
    report(results, (low, high))
    failures = [
        r.phase.label
        for r in results
        if r.invoices != r.n or r.duplicate_periods or r.unique_keys != r.n or r.charges != r.n
        or r.max_per_second > r.phase.limit
    ]  # fmt: skip
    if failures:
        raise SystemExit(f"exactly-once or rate bar broken in: {', '.join(failures)}")


if __name__ == "__main__":
    os.environ.setdefault("BILLING_LOG_LEVEL", "warning")
    from bench import stoppable

    stoppable.run(main())
