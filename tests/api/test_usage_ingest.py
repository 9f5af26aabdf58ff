"""Usage ingestion over HTTP: idempotency, validation, gauges, counters, notifications."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from adapters.db.session import Database
from api.app import create_app
from services.context import Services
from tests.factories.subscriptions import current_period, make_subscription
from tests.factories.tenants import TenantWithKey, make_tenant
from tests.harness import Databases, free_port


def event(
    key: str, metric: str = "llm_tokens", quantity: Any = 100, **extra: Any
) -> dict[str, Any]:
    body = {
        "metric": metric,
        "quantity": quantity,
        "timestamp": (extra.pop("timestamp", None) or datetime.now(UTC)).isoformat(),
        "idempotency_key": key,
    }
    body.update(extra)
    return body


async def counts(dbs: Databases, tenant: TenantWithKey) -> dict[str, Any]:
    async with dbs.admin.transaction() as conn:
        events = (
            await conn.execute(
                text("SELECT count(*) FROM usage_events WHERE tenant_id = :t"), {"t": tenant.id}
            )
        ).scalar_one()
        counters = dict(
            (
                await conn.execute(
                    text("SELECT metric, quantity FROM usage_period_counters WHERE tenant_id = :t"),
                    {"t": tenant.id},
                )
            ).all()
        )
        daily = dict(
            (
                await conn.execute(
                    text(
                        "SELECT metric, sum(quantity) FROM usage_daily_totals "
                        "WHERE tenant_id = :t GROUP BY metric"
                    ),
                    {"t": tenant.id},
                )
            ).all()
        )
    return {"events": events, "counters": counters, "daily": daily}


@pytest.fixture
async def tenant(dbs: Databases) -> TenantWithKey:
    tenant = await make_tenant(dbs)
    await make_subscription(dbs, tenant.id)
    return tenant


async def test_single_event_recorded_once(
    api: httpx.AsyncClient, dbs: Databases, tenant: TenantWithKey
) -> None:
    first = await api.post("/api/billing/usage", json=event("k1"), headers=tenant.headers)
    again = await api.post("/api/billing/usage", json=event("k1"), headers=tenant.headers)
    assert (first.status_code, first.json()["status"]) == (201, "accepted")
    assert (again.status_code, again.json()["status"]) == (200, "duplicate")
    state = await counts(dbs, tenant)
    assert state["events"] == 1
    assert state["counters"] == {"llm_tokens": Decimal(100)}
    assert state["daily"] == {"llm_tokens": Decimal(100)}


async def test_same_key_in_one_batch_and_across_batches_counts_once(
    api: httpx.AsyncClient, dbs: Databases, tenant: TenantWithKey
) -> None:
    batch = {"events": [event("a", quantity=10), event("a", quantity=10), event("b", quantity=5)]}
    response = await api.post("/api/billing/usage/batch", json=batch, headers=tenant.headers)
    assert response.status_code == 200
    body = response.json()
    assert [r["status"] for r in body["results"]] == ["accepted", "duplicate", "accepted"]
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 1, 0)

    second = {"events": [event("b", quantity=5), event("c", quantity=1)]}
    body = (await api.post("/api/billing/usage/batch", json=second, headers=tenant.headers)).json()
    assert [r["status"] for r in body["results"]] == ["duplicate", "accepted"]
    assert (await counts(dbs, tenant))["counters"] == {"llm_tokens": Decimal(16)}


async def test_a_recorded_key_late_in_the_batch_leaves_no_partial_count(
    api: httpx.AsyncClient, dbs: Databases, tenant: TenantWithKey
) -> None:
    # The batch is first written as if all its keys were new; "z" (last in key order) was
    # recorded before, so that attempt fails after inserting "a" and "m" and must leave nothing
    # behind before the batch is written again, skipping "z".
    first = {"events": [event("z", quantity=7)]}
    assert (await api.post("/api/billing/usage/batch", json=first, headers=tenant.headers)).json()[
        "accepted"
    ] == 1
    batch = {"events": [event("m", quantity=2), event("z", quantity=7), event("a", quantity=1)]}
    body = (await api.post("/api/billing/usage/batch", json=batch, headers=tenant.headers)).json()
    assert [r["status"] for r in body["results"]] == ["accepted", "duplicate", "accepted"]
    state = await counts(dbs, tenant)
    assert state == {
        "events": 3,
        "counters": {"llm_tokens": Decimal(10)},
        "daily": {"llm_tokens": Decimal(10)},
    }


async def test_concurrent_requests_with_the_same_keys_count_once(
    api: httpx.AsyncClient, dbs: Databases, tenant: TenantWithKey
) -> None:
    events = [event(f"key-{i}", quantity=1) for i in range(50)]
    responses = await asyncio.gather(
        *(
            api.post("/api/billing/usage/batch", json={"events": events}, headers=tenant.headers)
            for _ in range(6)
        ),
        *(api.post("/api/billing/usage", json=events[0], headers=tenant.headers) for _ in range(4)),
    )
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    accepted = sum(r.json().get("accepted", 0) for r in responses[:6]) + sum(
        r.status_code == 201 for r in responses[6:]
    )
    assert accepted == 50
    state = await counts(dbs, tenant)
    assert state["events"] == 50
    assert state["counters"] == {"llm_tokens": Decimal(50)}
    assert state["daily"] == {"llm_tokens": Decimal(50)}


async def test_gauges_take_the_max(
    api: httpx.AsyncClient, dbs: Databases, tenant: TenantWithKey
) -> None:
    batch = {
        "events": [
            event("s1", "storage_gb", "12.5"),
            event("s2", "storage_gb", "40.25"),
            event("s3", "storage_gb", "7"),
        ]
    }
    await api.post("/api/billing/usage/batch", json=batch, headers=tenant.headers)
    await api.post(
        "/api/billing/usage", json=event("s4", "storage_gb", "30"), headers=tenant.headers
    )
    state = await counts(dbs, tenant)
    assert state["counters"] == {"storage_gb": Decimal("40.25")}
    assert state["daily"] == {"storage_gb": Decimal("40.25")}


async def test_late_event_inside_the_open_period_is_accepted(
    api: httpx.AsyncClient, tenant: TenantWithKey
) -> None:
    late = datetime.now(UTC) - timedelta(days=4)
    response = await api.post(
        "/api/billing/usage", json=event("late", timestamp=late), headers=tenant.headers
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"metric": "gpu_hours"}, "metric"),
        ({"quantity": -1}, "quantity"),
        ({"quantity": "NaN"}, "quantity"),
        ({"quantity": "Infinity"}, "quantity"),
        # Offsets from the instant the test runs, not from collection: a long suite run would
        # otherwise make "10 minutes ahead" a moment in the past.
        ({"timestamp": timedelta(minutes=10)}, "timestamp"),
        ({"timestamp": -timedelta(days=6)}, "timestamp"),
        ({"metadata": {"blob": "x" * 5000}}, "metadata"),
        ({"idempotency_key": ""}, "idempotency_key"),
    ],
)
async def test_each_validation_error_is_a_422_naming_the_field_and_writes_nothing(
    api: httpx.AsyncClient,
    dbs: Databases,
    tenant: TenantWithKey,
    overrides: dict[str, Any],
    field: str,
) -> None:
    offset = overrides.get("timestamp")
    body = event("bad", **({"timestamp": datetime.now(UTC) + offset} if offset else {}))
    body.update({k: v for k, v in overrides.items() if k != "timestamp"})
    response = await api.post("/api/billing/usage", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["error"]["fields"]] == [field]
    assert (await counts(dbs, tenant)) == {"events": 0, "counters": {}, "daily": {}}


async def test_batch_reports_rejected_events_and_records_the_rest(
    api: httpx.AsyncClient, dbs: Databases, tenant: TenantWithKey
) -> None:
    batch = {"events": [event("ok", quantity=3), event("neg", quantity=-3), event("x", "nope")]}
    body = (await api.post("/api/billing/usage/batch", json=batch, headers=tenant.headers)).json()
    assert [(r["status"], r.get("field")) for r in body["results"]] == [
        ("accepted", None),
        ("rejected", "quantity"),
        ("rejected", "metric"),
    ]
    assert (await counts(dbs, tenant))["counters"] == {"llm_tokens": Decimal(3)}


async def test_metadata_is_stored_as_sent_even_beyond_the_fast_encoder(
    api: httpx.AsyncClient, dbs: Databases, tenant: TenantWithKey
) -> None:
    # The batch path encodes metadata with orjson, which refuses integers beyond 64 bits: such an
    # event must still be recorded, with its metadata intact (the standard encoder takes over).
    huge = 2**70
    metadata = [{"model": "gpt-ü", "tokens": huge}, {"nested": {"a": [1, 2.5, None, True]}}]
    batch = {"events": [event(f"m{i}", metadata=m) for i, m in enumerate(metadata)]}
    body = (await api.post("/api/billing/usage/batch", json=batch, headers=tenant.headers)).json()
    assert body["accepted"] == 2, body
    async with dbs.admin.transaction() as conn:
        stored = (
            await conn.execute(
                text(
                    "SELECT metadata::text FROM usage_events WHERE tenant_id = :t "
                    "ORDER BY idempotency_key"
                ),
                {"t": tenant.id},
            )
        ).scalars()
        assert [json.loads(s) for s in stored] == metadata


async def test_keys_holding_the_column_separator_are_recorded_and_deduplicated(
    api: httpx.AsyncClient, dbs: Databases, tenant: TenantWithKey
) -> None:
    # Text columns travel to Postgres joined by the ASCII unit separator; a key that holds one
    # must take the array path and come out unchanged.
    odd = "tenant\x1fjob\x1f7"
    batch = {"events": [event(odd, quantity=2), event("plain", quantity=3, metadata=None)]}
    first = (await api.post("/api/billing/usage/batch", json=batch, headers=tenant.headers)).json()
    again = (await api.post("/api/billing/usage/batch", json=batch, headers=tenant.headers)).json()
    assert (first["accepted"], again["duplicates"]) == (2, 2)
    async with dbs.admin.transaction() as conn:
        keys = (
            await conn.execute(
                text("SELECT idempotency_key FROM usage_events WHERE tenant_id = :t"),
                {"t": tenant.id},
            )
        ).scalars()
        assert sorted(keys) == sorted([odd, "plain"])
    assert (await counts(dbs, tenant))["counters"] == {"llm_tokens": Decimal(5)}


async def test_a_rejected_event_does_not_claim_its_key_for_a_later_one(
    api: httpx.AsyncClient, dbs: Databases, tenant: TenantWithKey
) -> None:
    batch = {"events": [event("same", quantity=-1), event("same", quantity=4)]}
    body = (await api.post("/api/billing/usage/batch", json=batch, headers=tenant.headers)).json()
    assert [r["status"] for r in body["results"]] == ["rejected", "accepted"]
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (1, 0, 1)
    assert (await counts(dbs, tenant))["counters"] == {"llm_tokens": Decimal(4)}


async def test_batch_larger_than_the_setting_is_refused(
    api: httpx.AsyncClient, dbs: Databases, tenant: TenantWithKey
) -> None:
    batch = {"events": [event(f"k{i}") for i in range(1001)]}
    response = await api.post("/api/billing/usage/batch", json=batch, headers=tenant.headers)
    assert response.status_code == 422
    assert response.json()["error"]["fields"][0]["field"] == "events"
    assert (await counts(dbs, tenant))["events"] == 0


async def test_tenant_without_open_period_gets_409(api: httpx.AsyncClient, dbs: Databases) -> None:
    tenant = await make_tenant(dbs)
    response = await api.post("/api/billing/usage", json=event("k"), headers=tenant.headers)
    assert response.status_code == 409


async def free_tenant_with_endpoint(dbs: Databases) -> TenantWithKey:
    """A Free-plan tenant (agent_executions: 100, hard) with one notification endpoint."""
    tenant = await make_tenant(dbs)
    await make_subscription(dbs, tenant.id, plan_code="free", period=current_period())
    async with dbs.worker.transaction() as conn:
        await conn.execute(
            text(
                "INSERT INTO notification_endpoints (tenant_id, url, secret) "
                "VALUES (:t, 'https://example.test/hook', 'whsec_test')"
            ),
            {"t": tenant.id},
        )
    return tenant


async def test_quota_notifications_queued_once_at_80_and_100_percent(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    tenant = await free_tenant_with_endpoint(dbs)
    # free: 100 agent executions, hard cap
    for key, quantity in (("a", 70), ("b", 15), ("c", 5), ("d", 10), ("e", 1)):
        await api.post(
            "/api/billing/usage",
            json=event(key, "agent_executions", quantity),
            headers=tenant.headers,
        )
    async with dbs.admin.transaction() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT message_id FROM notification_deliveries WHERE tenant_id = :t "
                    "ORDER BY created_at"
                ),
                {"t": tenant.id},
            )
        ).scalars()
        ids = list(rows)
    assert [i.rsplit(":", 1)[1] for i in ids] == ["80", "100"]
    assert all(i.startswith(f"quota.threshold:{tenant.id}:agent_executions:") for i in ids)


async def test_a_lost_notification_step_is_made_up_by_the_next_batch(
    api: httpx.AsyncClient, dbs: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The notifications follow the batch's commit in their own transaction. If that step
    # fails, the events stay recorded (and the answer says so), and the next batch for the
    # metric sends what was missed: the decision reads the counter, not the batch.
    from api.routes import usage as usage_route

    tenant = await free_tenant_with_endpoint(dbs)
    real = usage_route.usage_repo.mark_threshold_notified

    async def unavailable(*_args: Any, **_kwargs: Any) -> bool:
        raise ConnectionResetError("the database went away")

    monkeypatch.setattr(usage_route.usage_repo, "mark_threshold_notified", unavailable)
    first = await api.post(
        "/api/billing/usage", json=event("n1", "agent_executions", 85), headers=tenant.headers
    )
    assert first.status_code == 201, first.text
    assert (await counts(dbs, tenant))["counters"] == {"agent_executions": Decimal(85)}

    monkeypatch.setattr(usage_route.usage_repo, "mark_threshold_notified", real)
    await api.post(
        "/api/billing/usage", json=event("n2", "agent_executions", 1), headers=tenant.headers
    )
    async with dbs.admin.transaction() as conn:
        ids = (
            await conn.execute(
                text("SELECT message_id FROM notification_deliveries WHERE tenant_id = :t"),
                {"t": tenant.id},
            )
        ).scalars()
        assert [i.rsplit(":", 1)[1] for i in ids] == ["80"]


async def test_malformed_batch_is_a_422_naming_the_event_field(
    api: httpx.AsyncClient, dbs: Databases, tenant: TenantWithKey
) -> None:
    bad = event("k")
    del bad["quantity"]
    response = await api.post(
        "/api/billing/usage/batch", json={"events": [event("ok"), bad]}, headers=tenant.headers
    )
    assert response.status_code == 422
    assert [f["field"] for f in response.json()["error"]["fields"]] == ["events.1.quantity"]
    not_json = await api.post(
        "/api/billing/usage/batch",
        content=b"{nope",
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert not_json.status_code == 422
    assert (await counts(dbs, tenant))["events"] == 0


async def test_database_down_is_a_503_that_invites_a_retry(
    services: Services, tenant: TenantWithKey
) -> None:
    dead = Database(f"postgresql+asyncpg://billing_app@127.0.0.1:{free_port()}/nowhere")
    broken = replace(services, tenant_db=dead, extras={})  # keys still resolve (system role)
    app = create_app(broken.settings, services=broken)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        single = await client.post("/api/billing/usage", json=event("d1"), headers=tenant.headers)
        batch = await client.post(
            "/api/billing/usage/batch", json={"events": [event("d2")]}, headers=tenant.headers
        )
    await dead.dispose()
    for response in (single, batch):
        assert response.status_code == 503, response.text
        assert "idempotency keys" in response.json()["error"]["message"]
