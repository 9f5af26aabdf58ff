"""Operator grace-period endpoints at the HTTP edge: who may call them, unknown tenants and
windows, and the bounds of an extension. Nothing reaches Temporal in these cases (the behaviour
with a running window is tested in tests/workflows/test_payment_grace.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import text

from tests.factories.tenants import make_tenant, operator_headers
from tests.harness import Databases, tenant_rows


async def insert_window(dbs: Databases, tenant_id: UUID, *, resolution: str | None) -> str:
    now = datetime.now(UTC)
    async with dbs.admin.transaction() as conn:
        grace_id = (
            await conn.execute(
                text(
                    "INSERT INTO grace_periods (tenant_id, kind, subject, workflow_id, "
                    "started_at, expires_at, resolved_at, resolution, actor) VALUES (:t, "
                    "'payment', :s, :w, :start, :end, :resolved, :r, 'test') RETURNING id"
                ),
                {
                    "t": tenant_id,
                    "s": (s := str(uuid4())),
                    "w": f"grace:{tenant_id}:payment:{s}",
                    "start": now,
                    "end": now + timedelta(days=7),
                    "resolved": now if resolution else None,
                    "r": resolution,
                },
            )
        ).scalar_one()
    return str(grace_id)


BODIES: dict[str, dict[str, object]] = {"extend": {"hours": 1}, "end": {}, "resolve": {}}


def base(tenant_id: UUID) -> str:
    return f"/api/billing/operator/tenants/{tenant_id}/grace-periods"


async def test_list_needs_an_operator_key(api: httpx.AsyncClient, dbs: Databases) -> None:
    tenant = await make_tenant(dbs)
    assert (await api.get(base(tenant.id))).status_code == 401
    assert (await api.get(base(tenant.id), headers=tenant.headers)).status_code == 403
    grace_id = await insert_window(dbs, tenant.id, resolution=None)
    for action in ("extend", "end", "resolve"):
        response = await api.post(
            f"{base(tenant.id)}/{grace_id}/{action}", json=BODIES[action], headers=tenant.headers
        )
        assert response.status_code == 403, action


async def test_list_shows_the_tenants_windows_only(api: httpx.AsyncClient, dbs: Databases) -> None:
    tenant, other = await make_tenant(dbs), await make_tenant(dbs)
    mine = await insert_window(dbs, tenant.id, resolution="paid")
    await insert_window(dbs, other.id, resolution=None)
    headers = await operator_headers(dbs)
    listed = await api.get(base(tenant.id), headers=headers)
    assert listed.status_code == 200
    items = listed.json()["items"]
    assert [(i["id"], i["kind"], i["resolution"]) for i in items] == [(mine, "payment", "paid")]
    assert (await api.get(base(uuid4()), headers=headers)).status_code == 404


async def test_unknown_or_foreign_window_is_404(api: httpx.AsyncClient, dbs: Databases) -> None:
    tenant, other = await make_tenant(dbs), await make_tenant(dbs)
    foreign = await insert_window(dbs, other.id, resolution=None)
    headers = await operator_headers(dbs)
    before = await tenant_rows(dbs, other.id)
    for grace_id in (foreign, str(uuid4())):
        for action in ("extend", "end", "resolve"):
            response = await api.post(
                f"{base(tenant.id)}/{grace_id}/{action}", json=BODIES[action], headers=headers
            )
            assert response.status_code == 404, (grace_id, action)
    assert await tenant_rows(dbs, other.id) == before


async def test_an_override_under_one_tenants_path_never_touches_another(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    tenant, other = await make_tenant(dbs), await make_tenant(dbs)
    headers = await operator_headers(dbs)
    path = "/api/billing/operator/tenants/{}/quota-overrides/api_calls"
    body = {"included": 5, "reason": "test"}
    assert (await api.put(path.format(other.id), json=body, headers=headers)).status_code == 200
    before = await tenant_rows(dbs, other.id)
    assert (await api.delete(path.format(tenant.id), headers=headers)).status_code == 404
    changed = await api.put(path.format(tenant.id), json={**body, "included": 9}, headers=headers)
    assert changed.status_code == 200, changed.text
    assert await tenant_rows(dbs, other.id) == before


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"hours": 0},
        {"days": -1},
        {"hours": 721},
        {"days": 31},
        {"days": 30, "hours": 1},
        {"hours": "soon"},
        {"minutes": 5},
    ],
)
async def test_extension_must_be_positive_and_bounded(
    api: httpx.AsyncClient, dbs: Databases, body: dict[str, object]
) -> None:
    tenant = await make_tenant(dbs)
    grace_id = await insert_window(dbs, tenant.id, resolution=None)
    response = await api.post(
        f"{base(tenant.id)}/{grace_id}/extend", json=body, headers=await operator_headers(dbs)
    )
    assert response.status_code == 422, response.text


async def test_a_settled_window_cannot_be_changed(api: httpx.AsyncClient, dbs: Databases) -> None:
    tenant = await make_tenant(dbs)
    grace_id = await insert_window(dbs, tenant.id, resolution="paid")
    headers = await operator_headers(dbs)
    for action in ("extend", "end", "resolve"):
        response = await api.post(
            f"{base(tenant.id)}/{grace_id}/{action}", json=BODIES[action], headers=headers
        )
        assert response.status_code == 409, action
