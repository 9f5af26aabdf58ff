"""Usage metering benchmark: ingestion and the quota check over HTTP on loopback.

Starts its own embedded PostgreSQL on a free port (migrated, catalog seeded, one tenant on the
Enterprise plan), serves `bench.usage_app` with uvicorn in a subprocess on 127.0.0.1, and
measures, in the same run:

  * ingestion: events/s through POST /api/billing/usage/batch (batches of 1,000, a few concurrent
    clients) beside a raw asyncpg insert of the same rows (the same `unnest` INSERT into
    usage_events, no counters, no HTTP, as the table owner);
  * quota check: p50/p99 latency (one client, sequential) and requests/s (concurrent clients) of
    GET /api/billing/usage/check beside a bare FastAPI route served by the same process;
  * what the Prometheus metrics cost: the same app served a second time without them
    (`bench.usage_app:create_without_metrics`), ingestion rounds alternating with the first.

Prints a table with ratios. Everything it starts is stopped by pid at the end. Loops are bounded.

    .venv/bin/python bench/bench_usage.py [--batches 240] [--rounds 4] [--clients 4] [--checks 3000]
                                          [--quota-cache-seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
from sqlalchemy import text  # noqa: E402

from adapters.api_keys import Scope, display_prefix, generate_key, hash_key  # noqa: E402
from adapters.db.migrate import alembic_config  # noqa: E402
from adapters.db.plans import latest_plan, sync_catalog  # noqa: E402
from adapters.db.session import Database  # noqa: E402
from bench.http_client import Http  # noqa: E402
from billing.catalog import load_catalog  # noqa: E402
from config import DEFAULT_API_KEY_PEPPER  # noqa: E402
from devstack.postgres import EmbeddedPostgres  # noqa: E402
from tests.harness import free_port  # noqa: E402


async def prepare(admin_url: str) -> tuple[str, uuid.UUID, datetime]:
    from alembic import command

    await asyncio.to_thread(command.upgrade, alembic_config(admin_url), "head")
    db = Database(admin_url, pool_size=1)
    key = generate_key()
    tenant_id = uuid.uuid4()
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=2)
    async with db.transaction() as conn:
        await sync_catalog(conn, load_catalog(ROOT / "catalog" / "plans.toml"))
        plan = await latest_plan(conn, "enterprise")
        assert plan is not None
        await conn.execute(
            text("INSERT INTO tenants (id, name) VALUES (:id, 'bench')"), {"id": tenant_id}
        )
        await conn.execute(
            text(
                "INSERT INTO api_keys (tenant_id, name, prefix, key_hash, scopes, created_by) "
                "VALUES (:t, 'bench', :p, :h, :s, 'bench')"
            ),
            {
                "t": tenant_id,
                "p": display_prefix(key),
                "h": hash_key(key, DEFAULT_API_KEY_PEPPER),
                "s": [Scope.READ.value, Scope.MANAGE.value],
            },
        )
        await conn.execute(
            text(
                "INSERT INTO subscriptions (tenant_id, plan_id, plan_code, interval, currency, "
                "status, workflow_id, current_period_start, current_period_end) VALUES "
                "(:t, :p, 'enterprise', 'month', 'usd', 'active', :wf, :a, :b)"
            ),
            {
                "t": tenant_id,
                "p": plan.id,
                "wf": f"bench:{tenant_id}",
                "a": start,
                "b": start + timedelta(days=30),
            },
        )
        # Rate limiting stays on (ADR 0012): the bench tenant's quota checks and batches get
        # limits above what the bench sends, as an operator would give a busy tenant, so every
        # request pays the limiter's bookkeeping and none is refused.
        for route_class in ("check", "ingest"):
            await conn.execute(
                text(
                    "INSERT INTO tenant_rate_limits (tenant_id, route_class, per_window, actor) "
                    "VALUES (:t, :c, 100000000, 'bench')"
                ),
                {"t": tenant_id, "c": route_class},
            )
    await db.dispose()
    return key, tenant_id, start


def make_batches(prefix: str, batches: int, size: int) -> list[list[dict[str, object]]]:
    now = datetime.now(UTC)
    # Mixed counters and a gauge, sized so the Enterprise tenant never crosses a soft cap (that
    # would open a grace window, and this app has no Temporal).
    metrics = ["llm_tokens", "api_calls", "llm_tokens", "storage_gb"]
    return [
        [
            {
                "metric": metrics[(b * size + i) % 4],
                "quantity": 1 + (i % 7),
                "timestamp": (now - timedelta(seconds=i)).isoformat(),
                "idempotency_key": f"{prefix}-{b}-{i}",
                "metadata": {"model": "gpt-x", "agent": "bench"},
            }
            for i in range(size)
        ]
        for b in range(batches)
    ]


async def run_clients(jobs: list[object], clients: int, work) -> float:  # type: ignore[no-untyped-def]
    queue: asyncio.Queue[object] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def client() -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await work(job)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - started


async def bench_ingestion(
    ports: list[int], key: str, owner_url: str, tenant_id: uuid.UUID, args: argparse.Namespace
) -> tuple[list[float], float]:
    """Every path in alternating rounds (HTTP on each server, raw, HTTP, raw, ...), so that a
    change in the machine's load or in the table's size during the run weighs on all alike.
    Returns the events/s of each server, and of the raw insert."""
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    free_by_port = {port: [Http(port) for _ in range(args.clients)] for port in ports}
    conns = [c for cs in free_by_port.values() for c in cs]

    def poster(port: int):  # type: ignore[no-untyped-def]
        free = free_by_port[port]

        async def post(body: object) -> None:
            http = free.pop()
            try:
                status, payload = await http.request(
                    "POST",
                    "/api/billing/usage/batch",
                    auth,
                    body,  # type: ignore[arg-type]
                )
                assert status == 200, payload[:300]
                assert json.loads(payload)["accepted"] == 1000
            finally:
                free.append(http)

        return post

    pool = await asyncpg.create_pool(
        owner_url.replace("postgresql+asyncpg", "postgresql"),
        min_size=args.clients,
        max_size=args.clients,
    )
    sql = (
        "INSERT INTO usage_events "
        "(tenant_id, metric, quantity, occurred_at, idempotency_key, metadata) "
        "SELECT $1, m, q, o, k, md::jsonb FROM unnest("
        "$2::text[], $3::numeric[], $4::timestamptz[], $5::text[], $6::text[]) AS t(m, q, o, k, md)"
    )

    async def insert(cols: object) -> None:
        async with pool.acquire() as conn:
            await conn.execute(sql, tenant_id, *cols)  # type: ignore[misc]

    # warm-up of every path (connections, caches, plan parse), not counted
    for n, port in enumerate(ports):
        await poster(port)(json.dumps({"events": make_batches(f"warm{n}", 1, 1000)[0]}).encode())
    http_seconds = [0.0] * len(ports)
    raw_seconds = 0.0
    per_round = max(1, args.batches // args.rounds)
    for round_no in range(args.rounds):
        for n, port in enumerate(ports):
            bodies = [
                json.dumps({"events": b}).encode()
                for b in make_batches(f"http{n}-{round_no}", per_round, 1000)
            ]
            http_seconds[n] += await run_clients(bodies, args.clients, poster(port))
        # Raw asyncpg: the same rows (fresh keys), the same unnest INSERT, same concurrency.
        columns = [
            (
                [e["metric"] for e in b],
                [Decimal(e["quantity"]) for e in b],  # type: ignore[arg-type]
                [datetime.fromisoformat(e["timestamp"]) for e in b],  # type: ignore[arg-type]
                [e["idempotency_key"] for e in b],
                [json.dumps(e["metadata"]) for e in b],
            )
            for b in make_batches(f"raw{round_no}", per_round, 1000)
        ]
        raw_seconds += await run_clients(columns, args.clients, insert)  # type: ignore[arg-type]
    for c in conns:
        c.close()
    await pool.close()
    events = args.rounds * per_round * 1000
    return [events / seconds for seconds in http_seconds], events / raw_seconds


async def interleaved_latencies(
    targets: list[tuple[int, str, dict[str, str]]], n: int
) -> list[list[float]]:
    """Latencies of several requests (port, path, headers), round-robin request by request, so
    that each sees the same machine and the same gaps between its own requests."""
    conns = [Http(port) for port, _, _ in targets]
    for _ in range(50):  # warm-up
        for http, (_, path, headers) in zip(conns, targets, strict=True):
            await http.request("GET", path, headers)
    out: list[list[float]] = [[] for _ in targets]
    for _ in range(n):
        for http, (_, path, headers), times in zip(conns, targets, out, strict=True):
            t0 = time.perf_counter()
            status, body = await http.request("GET", path, headers)
            times.append(time.perf_counter() - t0)
            assert status == 200, body[:200]
    for http in conns:
        http.close()
    return out


async def throughput(port: int, path: str, headers: dict[str, str], n: int, clients: int) -> float:
    conns = [Http(port) for _ in range(clients)]
    free = list(conns)

    async def get(_: object) -> None:
        http = free.pop()
        try:
            status, _body = await http.request("GET", path, headers)
            assert status in (200, 402)
        finally:
            free.append(http)

    elapsed = await run_clients(list(range(n)), clients, get)  # type: ignore[arg-type]
    for c in conns:
        c.close()
    return n / elapsed


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


async def main(args: argparse.Namespace) -> int:
    base = Path(tempfile.mkdtemp(prefix="billing-bench-"))
    pg = EmbeddedPostgres(base / "data", free_port(), fsync=False)
    servers: list[subprocess.Popen[bytes]] = []
    server_log = (base / "server.log").open("wb")
    try:
        pg.start()
        pg.ensure_database("bench")
        owner_url = pg.url("bench")
        key, tenant_id, _ = await prepare(owner_url)
        env = {**os.environ, "BILLING_DATABASE_URL": owner_url, "BILLING_ENVIRONMENT": "dev"}
        if args.quota_cache_seconds is not None:
            env["BILLING_QUOTA_CACHE_SECONDS"] = str(args.quota_cache_seconds)
        # The product app, and the same app with the metrics taken out (to measure their cost).
        port, port_off = free_port(), free_port()
        for factory, at in (("create", port), ("create_without_metrics", port_off)):
            # Started once, before anything is measured: blocking here is harmless.
            servers.append(
                subprocess.Popen(  # noqa: ASYNC220
                    [
                        sys.executable, "-m", "uvicorn", "--factory", f"bench.usage_app:{factory}",
                        "--host", "127.0.0.1", "--port", str(at),
                        "--log-level", "warning", "--no-access-log",
                    ],
                    cwd=ROOT,
                    env=env,
                    start_new_session=True,
                    stderr=server_log,
                )
            )  # fmt: skip
            for _ in range(200):  # bounded wait for the port
                try:
                    _r, w = await asyncio.open_connection("127.0.0.1", at)
                    w.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            else:
                raise RuntimeError("uvicorn did not start")

        (http_rate, http_off), raw_rate = await bench_ingestion(
            [port, port_off], key, owner_url, tenant_id, args
        )

        auth = {"Authorization": f"Bearer {key}"}
        check = "/api/billing/usage/check?metric=llm_tokens&quantity=10"
        bare = "/bench/bare"
        # The bare route, the check, and the check without metrics, request by request, so
        # drift and the gaps between requests weigh on all three alike.
        lat_bare, lat_check, lat_off = await interleaved_latencies(
            [(port, bare, {}), (port, check, auth), (port_off, check, auth)], args.checks
        )
        rps_bare = await throughput(port, bare, {}, args.checks, args.clients * 2)
        rps_check = rps_off = 0.0
        for _ in range(3):  # alternating rounds; the best of each
            rps_check = max(
                rps_check, await throughput(port, check, auth, args.checks, args.clients * 2)
            )
            rps_off = max(
                rps_off, await throughput(port_off, check, auth, args.checks, args.clients * 2)
            )

        rows = [
            (
                "ingestion, HTTP batch of 1,000",
                f"{http_rate:,.0f} events/s",
                f"raw asyncpg unnest insert {raw_rate:,.0f} events/s",
                f"{http_rate / raw_rate:.2f}x of raw",
                ">= 10,000/s and >= 0.5x",
            ),
            (
                "quota check p50",
                f"{pct(lat_check, 0.50):.2f} ms",
                f"bare route {pct(lat_bare, 0.50):.2f} ms",
                f"{pct(lat_check, 0.50) / pct(lat_bare, 0.50):.2f}x",
                "",
            ),
            (
                "quota check p99",
                f"{pct(lat_check, 0.99):.2f} ms",
                f"bare route {pct(lat_bare, 0.99):.2f} ms",
                f"{pct(lat_check, 0.99) / pct(lat_bare, 0.99):.2f}x",
                "< 5 ms and <= 1.5x",
            ),
            (
                "quota check throughput",
                f"{rps_check:,.0f} req/s",
                f"bare route {rps_bare:,.0f} req/s",
                f"{rps_bare / rps_check:.2f}x slower",
                "",
            ),
            (
                "metrics cost: ingestion",
                f"{http_rate:,.0f} events/s with metrics",
                f"without metrics {http_off:,.0f} events/s",
                f"{http_rate / http_off:.3f}x",
                "overhead < 5%",
            ),
            (
                "metrics cost: quota check p99",
                f"{pct(lat_check, 0.99):.3f} ms with metrics",
                f"without metrics {pct(lat_off, 0.99):.3f} ms",
                f"{pct(lat_check, 0.99) / pct(lat_off, 0.99):.3f}x",
                "overhead < 5%",
            ),
            (
                "metrics cost: quota throughput",
                f"{rps_check:,.0f} req/s with metrics",
                f"without metrics {rps_off:,.0f} req/s",
                f"{rps_check / rps_off:.3f}x",
                "overhead < 5%",
            ),
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        print(
            f"usage bench: {args.batches} batches x 1,000 events per path in {args.rounds} "
            f"alternating rounds, {args.clients} clients; "
            f"{args.checks} quota checks, quota cache "
            f"{'default' if args.quota_cache_seconds is None else args.quota_cache_seconds}, "
            "rate limiting on; "
            f"cpus={os.cpu_count()}; load {os.getloadavg()[0]:.1f}"
        )
        for r in rows:
            print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        return 0
    except BaseException:
        server_log.flush()
        print((base / "server.log").read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        for server in servers:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=240, help="per path, over all rounds")
    parser.add_argument("--rounds", type=int, default=4, help="alternating HTTP/raw rounds")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--checks", type=int, default=3000)
    parser.add_argument(
        "--quota-cache-seconds",
        type=float,
        default=None,
        help="BILLING_QUOTA_CACHE_SECONDS for the server (0: every check reads Postgres)",
    )
    from bench import stoppable

    sys.exit(stoppable.run(main(parser.parse_args())))
