"""The in-process API key cache: a revocation through this process takes effect at once; a key
revoked elsewhere (here: straight in the database) is accepted until the TTL runs out."""

from __future__ import annotations

import dataclasses

import httpx

from adapters.db import tenants as tenant_repo
from api.app import create_app
from services.context import Services
from tests.factories.tenants import make_tenant, operator_headers
from tests.harness import Databases


async def test_revocation_through_the_api_is_immediate(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    tenant = await make_tenant(dbs)
    assert (await api.get("/api/billing/usage/quotas", headers=tenant.headers)).status_code == 404
    keys = await api.get(
        f"/api/billing/operator/tenants/{tenant.id}/api-keys", headers=await operator_headers(dbs)
    )
    key_id = keys.json()[0]["id"]
    await api.delete(
        f"/api/billing/operator/api-keys/{key_id}", headers=await operator_headers(dbs)
    )
    response = await api.get("/api/billing/usage/quotas", headers=tenant.headers)
    assert response.status_code == 401


async def test_revocation_elsewhere_waits_for_the_ttl(services: Services, dbs: Databases) -> None:
    tenant = await make_tenant(dbs)
    for ttl, expected in ((60.0, 404), (0.0, 401)):
        own = dataclasses.replace(
            services,
            settings=services.settings.model_copy(update={"api_key_cache_seconds": ttl}),
            extras={},
        )
        transport = httpx.ASGITransport(app=create_app(own.settings, services=own))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            # 404: authenticated (no subscription yet), and now cached when the TTL allows
            first = await client.get("/api/billing/usage/quotas", headers=tenant.headers)
            assert first.status_code == 404
            async with dbs.worker.transaction() as conn:
                for key in await tenant_repo.list_api_keys(conn, tenant.id):
                    await tenant_repo.revoke_api_key(conn, key.id)
            again = await client.get("/api/billing/usage/quotas", headers=tenant.headers)
            assert again.status_code == expected
        async with dbs.admin.transaction() as conn:
            from sqlalchemy import text

            await conn.execute(
                text("UPDATE api_keys SET revoked_at = NULL WHERE tenant_id = :t"), {"t": tenant.id}
            )
