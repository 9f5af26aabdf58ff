"""API key rules: 401 for unknown, revoked or malformed keys; 403 for a missing scope; 404 for
another tenant's resource; operator endpoints create tenants and issue/revoke keys."""

from __future__ import annotations

import uuid

import httpx
import pytest

from adapters.api_keys import Scope
from tests.factories.tenants import make_api_key, make_tenant, operator_headers
from tests.harness import Databases


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Bearer bk_" + "A" * 43},  # well formed, unknown
    ],
    ids=["missing", "empty", "basic", "malformed", "unknown"],
)
async def test_bad_keys_get_401(api: httpx.AsyncClient, dbs: Databases, headers: dict) -> None:
    response = await api.get("/api/billing/subscription", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_revoked_key_gets_401(api: httpx.AsyncClient, dbs: Databases) -> None:
    tenant = await make_tenant(dbs)
    revoked = await make_api_key(dbs, tenant.id, [Scope.READ], revoked=True)
    response = await api.get("/api/billing/subscription", headers=_bearer(revoked))
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


async def test_read_key_cannot_manage(api: httpx.AsyncClient, dbs: Databases) -> None:
    tenant = await make_tenant(dbs, scopes=[Scope.READ])
    response = await api.post(
        "/api/billing/subscription", json={"plan_code": "standard"}, headers=tenant.headers
    )
    assert response.status_code == 403
    assert "billing.manage" in response.json()["error"]["message"]


async def test_tenant_key_cannot_use_operator_endpoints(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    tenant = await make_tenant(dbs)
    response = await api.post(
        "/api/billing/operator/tenants", json={"name": "x"}, headers=tenant.headers
    )
    assert response.status_code == 403


async def test_operator_key_cannot_use_tenant_endpoints(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    response = await api.get("/api/billing/subscription", headers=await operator_headers(dbs))
    assert response.status_code == 403


async def test_operator_creates_tenant_and_issues_and_revokes_keys(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    op = await operator_headers(dbs)
    created = await api.post(
        "/api/billing/operator/tenants",
        json={"name": "Acme", "email": "billing@example.com"},
        headers=op,
    )
    assert created.status_code == 201, created.text
    tenant_id = created.json()["id"]

    issued = await api.post(
        f"/api/billing/operator/tenants/{tenant_id}/api-keys",
        json={"name": "backend", "scopes": ["billing.read"]},
        headers=op,
    )
    assert issued.status_code == 201, issued.text
    key = issued.json()["key"]
    assert key.startswith("bk_")

    listed = await api.get(f"/api/billing/operator/tenants/{tenant_id}/api-keys", headers=op)
    assert [k["prefix"] for k in listed.json()] == [key[:10]]
    assert "key" not in listed.json()[0]  # shown once, never again

    # The new key works for its tenant (no subscription yet -> 404, not 401/403).
    assert (await api.get("/api/billing/subscription", headers=_bearer(key))).status_code == 404

    revoked = await api.delete(f"/api/billing/operator/api-keys/{issued.json()['id']}", headers=op)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert (await api.get("/api/billing/subscription", headers=_bearer(key))).status_code == 401


async def test_operator_cannot_issue_operator_scope_to_a_tenant(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    tenant = await make_tenant(dbs)
    response = await api.post(
        f"/api/billing/operator/tenants/{tenant.id}/api-keys",
        json={"name": "x", "scopes": ["billing.operator"]},
        headers=await operator_headers(dbs),
    )
    assert response.status_code == 422


async def test_unknown_tenant_is_404_for_operator(api: httpx.AsyncClient, dbs: Databases) -> None:
    op = await operator_headers(dbs)
    missing = uuid.uuid4()
    assert (
        await api.get(f"/api/billing/operator/tenants/{missing}", headers=op)
    ).status_code == 404
    response = await api.post(
        f"/api/billing/operator/tenants/{missing}/api-keys",
        json={"name": "x", "scopes": ["billing.read"]},
        headers=op,
    )
    assert response.status_code == 404
