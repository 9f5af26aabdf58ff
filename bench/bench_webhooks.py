"""Webhook benchmark: acceptance at the endpoint and processing throughput, each beside a
baseline measured in the same run on the same servers.

1. Acceptance: signed Stripe events POSTed to /api/billing/webhooks/stripe (API under uvicorn
   on 127.0.0.1, verify + inbox insert + workflow start) vs the same bodies POSTed to a bare
   FastAPI route on the same server. Events/s and p99 latency, bounded concurrency.
2. Processing: events/s from the first POST until the inbox has drained (every row final, each
   signal applied once by one of `--subscriptions` stand-in subscription workflows) vs raw
   Temporal signals sent to as many stand-ins until they have applied them all.

Embedded PostgreSQL and an in-memory Temporal dev server are started here and stopped by pid.
Usage: python bench/bench_webhooks.py [--events N] [--process-events N] [--subscriptions K]
       [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = "whsec_bench"  # noqa: S105 - a benchmark-only secret


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


async def _post_all(
    port: int, path: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int
) -> tuple[float, list[float], int]:
    """(events/s, latencies in s, non-2xx count) for POSTing every request over `concurrency`
    keep-alive connections."""
    from bench.http_client import Http

    latencies: list[float] = []
    failures = 0
    queue: asyncio.Queue[tuple[bytes, dict[str, str]]] = asyncio.Queue()
    for item in requests:
        queue.put_nowait(item)

    async def worker() -> None:
        nonlocal failures
        http = Http(port)
        try:
            while not queue.empty():
                body, headers = queue.get_nowait()
                start = time.perf_counter()
                status, answer = await http.request("POST", path, headers, body)
                latencies.append(time.perf_counter() - start)
                if not 200 <= status < 300:
                    failures += 1
                    if failures <= 3:
                        print(f"non-2xx answer {status}: {answer[:300]!r}", flush=True)  # noqa: T201
        finally:
            http.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    return len(requests) / elapsed, latencies, failures


def _start_api(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            *("-m", "uvicorn", "bench.webhook_app:build", "--factory"),
            *("--host", "127.0.0.1", "--port", str(port)),
            *("--log-level", "warning", "--no-access-log"),
        ],
        cwd=ROOT,
        env=env,
    )


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"API exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"API did not answer on {url}")


async def run(args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    from alembic import command
    from sqlalchemy import func, select, text

    from adapters.db import tenants as tenant_repo
    from adapters.db.migrate import alembic_config
    from adapters.db.plans import latest_plan, sync_catalog
    from adapters.db.session import Database
    from adapters.db.tables import webhook_events
    from adapters.dispatch import DispatchConfig, Dispatcher
    from adapters.stripe_fake import FakeStripeGateway
    from billing.catalog import load_catalog
    from billing.payments import InvoiceLine
    from config import WORKER_ROLE, Settings
    from devstack.postgres import EmbeddedPostgres
    from devstack.temporal import TemporalDevServer
    from tests.factories.stripe_events import invoice_object, signed_request, stripe_event
    from tests.harness import free_port
    from tests.webhooks.standin import StandinInput, StandinSubscriptionWorkflow
    from worker import build_workers
    from workflows.notification_delivery import NotificationDeliveryWorkflow
    from workflows.stripe_event import StripeEventWorkflow
    from workflows.subscription_io import StripeEventSignal

    base = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    postgres = EmbeddedPostgres(base / "pg", free_port(), fsync=False)
    temporal = TemporalDevServer(free_port())
    api_proc: subprocess.Popen[bytes] | None = None
    rows: list[tuple[str, str, str, str]] = []
    try:
        postgres.start()
        postgres.ensure_database("bench")
        url = postgres.url("bench")
        await asyncio.to_thread(command.upgrade, alembic_config(url), "head")
        temporal.start(log_path=base / "temporal.log")
        settings = Settings(
            database_url=url,
            temporal_address=temporal.address,
            task_queue="bench",
            stripe_task_queue="bench-stripe",
            stripe_activities_per_second=10_000,
        )
        api_port = free_port()
        env = {
            **os.environ,
            "BILLING_DATABASE_URL": url,
            "BILLING_TEMPORAL_ADDRESS": temporal.address,
            "BILLING_TASK_QUEUE": "bench",
            "BILLING_STRIPE_TASK_QUEUE": "bench-stripe",
            "BILLING_STRIPE_API_KEY": "sk_test_bench_unused",
            "BILLING_STRIPE_API_BASE": "http://127.0.0.1:9",
            "BILLING_STRIPE_WEBHOOK_SECRETS": SECRET,
        }
        api_proc = _start_api(env, api_port)
        api = f"http://127.0.0.1:{api_port}"
        _wait_http(f"{api}/openapi.json", api_proc)

        # --- the books the events are about -------------------------------------------------
        from temporalio.client import Client

        client = await Client.connect(temporal.address)
        db = Database(settings.role_url(WORKER_ROLE), pool_size=10)
        # The bench's own reads use a pool of their own: they must not wait behind the worker's.
        admin = Database(url, pool_size=2)
        gateway = FakeStripeGateway()
        async with db.transaction() as conn:
            tenant = await tenant_repo.create_tenant(conn, name="Bench", email=None)
        customer = await gateway.ensure_customer(str(tenant.id), None, "Bench", "customer:bench")
        async with admin.transaction() as conn:
            await sync_catalog(conn, load_catalog(settings.catalog_path))
            plan = await latest_plan(conn, "standard")
            assert plan is not None

        async def subscriber() -> Any:
            sid = str(uuid.uuid4())
            return sid, await client.start_workflow(
                StandinSubscriptionWorkflow.run,
                StandinInput(sid),
                id=f"subscription:{sid}",
                task_queue="bench",
            )

        async def subscribed(tenant_id: Any) -> tuple[str, Any]:
            """A stand-in subscription of the tenant, its row and its workflow."""
            sid, handle = await subscriber()
            async with admin.transaction() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO subscriptions (id, tenant_id, plan_id, plan_code, interval, "
                        "currency, status, workflow_id) VALUES (:id, :t, :p, 'standard', 'month', "
                        "'usd', 'active', :wf)"
                    ),
                    {"id": sid, "t": tenant_id, "p": plan.id, "wf": f"subscription:{sid}"},
                )
            return sid, handle

        sid, handle = await subscribed(tenant.id)

        async def invoice(
            status: str, attempts: int, owner: tuple[Any, str] | None = None
        ) -> tuple[str, str]:
            """An engine invoice (row and Stripe invoice) in `status`, of `owner` (tenant id,
            subscription id; default: the first subscription)."""
            tenant_id, sub_id = owner or (tenant.id, sid)
            invoice_id = str(uuid.uuid4())
            inv = await gateway.create_invoice(
                customer.id,
                [InvoiceLine("Bench plan", 1000, "usd")],
                {"invoice_id": invoice_id, "tenant_id": str(tenant_id), "subscription_id": sub_id},
                f"invoice:{invoice_id}",
            )
            async with admin.transaction() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO invoices (id, tenant_id, subscription_id, status, "
                        "billing_reason, billing_key, currency, subtotal, total, amount_due, "
                        "stripe_invoice_id, attempt_count) VALUES (:id, :t, :s, :status, "
                        "'subscription_cycle', :key, 'usd', 1000, 1000, 1000, :sid, :n)"
                    ),
                    {"id": invoice_id, "t": tenant_id, "s": sub_id, "status": status,
                     "key": f"bench:{invoice_id}", "sid": inv.id, "n": attempts},
                )  # fmt: skip
            return inv.id, invoice_id

        def event(
            event_type: str,
            refs: tuple[str, str],
            status: str,
            owner: tuple[Any, str] | None = None,
        ) -> Any:
            tenant_id, sub_id = owner or (tenant.id, sid)
            return stripe_event(
                event_type,
                invoice_object(
                    refs[0], customer=customer.id, status=status, tenant_id=str(tenant_id),
                    subscription_id=sub_id, invoice_id=refs[1],
                ),
            )  # fmt: skip

        # A billing day's stream: payments of invoices the engine has open (action) among
        # the echoes of its own calls (no action): invoices it finalised, collections
        # whose failure it saw itself, payments of invoices it has already seen paid.
        open_invoice = await invoice("open", 0)
        attempted = await invoice("open", 1)
        paid = await invoice("paid", 1)
        # The payments are spread over `--subscriptions` subscriptions, each of its own tenant
        # (the engine bills one live subscription per tenant) with an invoice open, as a
        # billing day's are: one stand-in workflow taking every signal was the bound of both
        # the engine's path and the raw signals.
        targets: list[tuple[tuple[Any, str], Any, tuple[str, str]]] = [
            ((tenant.id, sid), handle, open_invoice)
        ]
        for k in range(1, args.subscriptions):
            async with db.transaction() as conn:
                owner_tenant = await tenant_repo.create_tenant(conn, name=f"Bench {k}", email=None)
            owner = (owner_tenant.id, (await subscribed(owner_tenant.id))[0])
            targets.append(
                (owner, client.get_workflow_handle(f"subscription:{owner[1]}"),
                 await invoice("open", 0, owner))
            )  # fmt: skip

        # --- 1. acceptance -----------------------------------------------------------------
        # By default what most of a billing day's events are: echoes of the engine's own calls
        # (here the payment of an invoice it has seen paid), which the endpoint verifies,
        # stores and routes without Temporal; with `--acceptance-type T`, events of type T
        # that concern no tenant (the inbox and a workflow start each). No worker runs yet, so
        # processing does not compete for the cores.
        def unrelated(n: int) -> list[tuple[bytes, dict[str, str]]]:
            if args.acceptance_type == "echo":
                return [
                    signed_request(event("invoice.payment_succeeded", paid, "paid"), SECRET)
                    for _ in range(n)
                ]
            return [
                signed_request(
                    stripe_event(args.acceptance_type, {"id": f"in_b{i}", "object": "invoice"}),
                    SECRET,
                )
                for i in range(n)
            ]

        hook_path = "/api/billing/webhooks/stripe"
        await _post_all(api_port, "/bench/bare", unrelated(200), args.concurrency)  # warm-up
        bare_requests, hook_requests = unrelated(args.events), unrelated(args.events)
        bare_rate, bare_lat, bare_fail = await _post_all(
            api_port, "/bench/bare", bare_requests, args.concurrency
        )
        hook_rate, hook_lat, hook_fail = await _post_all(
            api_port, hook_path, hook_requests, args.concurrency
        )
        rows.append(
            (
                "acceptance events/s",
                f"{hook_rate:,.0f}",
                f"{bare_rate:,.0f}",
                f"{hook_rate / bare_rate:.2f}",
            )
        )
        rows.append(
            (
                "acceptance p99 ms",
                f"{_p99(hook_lat) * 1000:.1f}",
                f"{_p99(bare_lat) * 1000:.1f}",
                f"{_p99(hook_lat) / _p99(bare_lat):.2f}",
            )
        )
        rows.append(
            (
                "acceptance median ms",
                f"{statistics.median(hook_lat) * 1000:.1f}",
                f"{statistics.median(bare_lat) * 1000:.1f}",
                f"{statistics.median(hook_lat) / statistics.median(bare_lat):.2f}",
            )
        )
        if hook_fail or bare_fail:
            raise RuntimeError(f"non-2xx answers: webhook {hook_fail}, bare {bare_fail}")

        # --- 2. processing -----------------------------------------------------------------
        workers = build_workers(
            client,
            db=db,
            gateway=gateway,
            task_queue="bench",
            stripe_task_queue="bench-stripe",
            stripe_activities_per_second=10_000,
            dispatch=DispatchConfig.from_settings(settings),
            workflows=[
                StandinSubscriptionWorkflow,
                StripeEventWorkflow,
                NotificationDeliveryWorkflow,
            ],
        )
        runs = [asyncio.create_task(w.run()) for w in workers]
        # The worker process runs the re-dispatcher too, with production's settings: a row the
        # API's queue has not routed 10 s after it arrived is started as a workflow. (The bench
        # used 2 s; a 6,000-event burst keeps rows in the queue longer than that, and the
        # re-dispatcher then sent echoes through the workflow beside their routing.)
        stop = asyncio.Event()
        redispatcher = asyncio.create_task(
            Dispatcher(db, client, DispatchConfig.from_settings(settings)).run(
                stop,
                interval_seconds=settings.redispatch_interval_seconds,
                batch=settings.redispatch_batch_size,
                min_age_seconds=settings.redispatch_min_age_seconds,
            )
        )
        runs.append(redispatcher)
        try:
            # The acceptance run's events first (settled at acceptance unless
            # `--acceptance-type` made them take the workflow).
            await _drain(admin, webhook_events, select, func)
            echoes = [
                ("invoice.finalized", open_invoice, "open"),
                ("invoice.payment_failed", attempted, "open"),
                ("invoice.payment_succeeded", paid, "paid"),
            ]
            action = [
                event("invoice.paid", target_invoice, "paid", target)
                for n in range(args.process_events)
                for target, _, target_invoice in [targets[n % len(targets)]]
            ]
            no_action = [event(*echoes[n % len(echoes)]) for n in range(args.echo_events)]
            stream = [*action, *no_action]
            random.Random(7).shuffle(stream)
            requests = [signed_request(e, SECRET) for e in stream]
            began = time.perf_counter()
            _, _, failed = await _post_all(api_port, hook_path, requests, args.concurrency)
            if failed:  # those events are not in the inbox: the wait below would never end
                raise RuntimeError(f"processing: {failed} non-2xx answers")
            handles = [h for _, h, _ in targets]
            await _until_applied(handles, StandinSubscriptionWorkflow.applied, args.process_events)
            await _drain(admin, webhook_events, select, func)
            processing_rate = args.process_events / (time.perf_counter() - began)
            states = [await h.query(StandinSubscriptionWorkflow.state) for h in handles]
            expected = {e["id"] for e in action}
            applied = {s.event_id for state in states for s in state.applied}
            deliveries = sum(state.deliveries for state in states)
            async with admin.transaction() as conn:
                outcome = dict(
                    (
                        await conn.execute(
                            select(webhook_events.c.status, func.count())
                            .where(webhook_events.c.stripe_event_id.in_([e["id"] for e in stream]))
                            .group_by(webhook_events.c.status)
                        )
                    ).all()
                )
                # Over both runs: rows a `stripe_event` run or the re-dispatcher marked
                # dispatched (routed events never are).
                left_to_redispatcher = (
                    await conn.execute(
                        select(func.count())
                        .select_from(webhook_events)
                        .where(webhook_events.c.dispatched_at.is_not(None))
                    )
                ).scalar_one()
            if failed or applied != expected or deliveries != len(expected):
                raise RuntimeError(
                    f"applied {len(applied & expected)} of {len(expected)} action events, "
                    f"{len(applied - expected)} others, {deliveries} deliveries; applied by "
                    f"type: {Counter(s.event_type for state in states for s in state.applied)}"
                )
            if outcome != {"processed": len(stream)}:
                raise RuntimeError(f"inbox rows not all processed: {outcome}")
            no_action_share = len(no_action) / len(stream)
            print(  # noqa: T201 - the benchmark's output
                f"processing: {len(action)} action events to {len(targets)} subscriptions among "
                f"{len(stream)} ({no_action_share:.0%} needed no action: settled without "
                f"Temporal); each applied once ({deliveries} deliveries); "
                f"events of both runs that took a workflow (a timeout leaves one to the "
                f"re-dispatcher): {left_to_redispatcher}"
            )

            # Baseline: the same number of signals sent straight to as many stand-ins.
            raw_handles = [(await subscriber())[1] for _ in targets]
            sem = asyncio.Semaphore(args.concurrency)

            async def raw_signal(n: int) -> None:
                async with sem:
                    await raw_handles[n % len(raw_handles)].signal(
                        StandinSubscriptionWorkflow.stripe_event,
                        StripeEventSignal(event_id=f"raw_{n}", event_type="invoice.payment_failed"),
                    )

            began = time.perf_counter()
            await asyncio.gather(*(raw_signal(n) for n in range(args.process_events)))
            await _until_applied(
                raw_handles, StandinSubscriptionWorkflow.applied, args.process_events
            )
            raw_rate = args.process_events / (time.perf_counter() - began)
            rows.append(
                (
                    "processing events/s",
                    f"{processing_rate:,.0f}",
                    f"{raw_rate:,.0f}",
                    f"{processing_rate / raw_rate:.2f}",
                )
            )
            for h in [*handles, *raw_handles]:
                await h.terminate("bench over")
        finally:
            stop.set()
            await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
            await asyncio.gather(*runs, return_exceptions=True)
            await db.dispose()
            await admin.dispose()
    finally:
        if api_proc is not None:
            api_proc.terminate()
            try:
                api_proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                api_proc.kill()
                api_proc.wait()
        temporal.stop()
        postgres.stop()
        shutil.rmtree(base, ignore_errors=True)
    return rows


async def _until_applied(handles: list[Any], applied: Any, n: int) -> None:
    """Wait until the stand-ins have applied `n` events together (each its share, as the
    events were dealt round-robin), the same way for the engine's path and for the raw
    signals: one update per stand-in that answers when its share is applied. (Polling a query,
    each stand-in every 20 ms, was a thousand queries a second on the server and the worker
    inside the measured time, and the longer window paid more of it.)"""
    shares = [n // len(handles) + (1 if k < n % len(handles) else 0) for k in range(len(handles))]
    try:
        async with asyncio.timeout(600):
            waits = zip(handles, shares, strict=True)
            await asyncio.gather(*(h.execute_update(applied, share) for h, share in waits))
    except TimeoutError:
        raise RuntimeError(f"{n} events not applied after 10 minutes") from None


async def _drain(db: Any, table: Any, select: Any, func: Any, limit_s: float = 600) -> None:
    """Until no inbox row is `received` or `dispatched` (bounded: a stuck row is an error)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        async with db.transaction() as conn:
            left = (
                await conn.execute(
                    select(func.count())
                    .select_from(table)
                    .where(table.c.status.in_(["received", "dispatched"]))
                )
            ).scalar_one()
        if left == 0:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the inbox did not drain")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000, help="acceptance: events per route")
    # 2,000 action events: at 300 the processing window was about a second, and the first
    # second (connections, dispatch workers) weighed more than the rate (docs/benchmarks.md).
    parser.add_argument(
        "--process-events", type=int, default=2000, help="processing: events that need action"
    )
    parser.add_argument(
        "--echo-events",
        type=int,
        default=4000,
        help="processing: events among them that need no action (echoes of the engine's calls)",
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--subscriptions",
        type=int,
        default=20,
        help="processing: subscriptions the action events (and the raw signals) are spread over",
    )
    parser.add_argument(
        "--acceptance-type",
        default="echo",
        help="acceptance events: `echo` (a billing day's echoes, settled without Temporal), "
        "or an event type concerning no tenant (an unknown type measures the inbox alone)",
    )
    args = parser.parse_args()
    from bench import stoppable

    rows = stoppable.run(run(args))
    header = ("measure", "webhooks", "baseline", "ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    print(  # noqa: T201 - the benchmark's output
        "\n".join(
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))
            for row in [header, *rows]
        )
    )
    print(  # noqa: T201
        "baselines: acceptance = bare FastAPI route on the same uvicorn server; "
        "processing = raw Temporal signals to the same stand-in workflow"
    )
    print(json.dumps({"rows": rows}))  # noqa: T201 - machine-readable copy


if __name__ == "__main__":
    main()
