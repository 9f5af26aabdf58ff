"""Tenants and API keys for tests."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from adapters.api_keys import Scope, display_prefix, generate_key, hash_key
from adapters.db import tenants as tenant_repo
from tests.harness import Databases

TEST_PEPPER = "test-pepper-not-a-secret"  # noqa: S105 - matches the settings fixture
_names = itertools.count(1)


@dataclass(frozen=True)
class TenantWithKey:
    id: UUID
    name: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


async def make_api_key(
    dbs: Databases, tenant_id: UUID | None, scopes: Sequence[str], *, revoked: bool = False
) -> str:
    key = generate_key()
    async with dbs.worker.transaction() as conn:
        row = await tenant_repo.insert_api_key(
            conn,
            tenant_id=tenant_id,
            name="test",
            prefix=display_prefix(key),
            key_hash=hash_key(key, TEST_PEPPER),
            scopes=list(scopes),
            created_by="tests",
        )
        if revoked:
            await tenant_repo.revoke_api_key(conn, row.id)
    return key


async def make_tenant(
    dbs: Databases,
    *,
    name: str | None = None,
    scopes: Sequence[str] = (Scope.READ, Scope.MANAGE),
) -> TenantWithKey:
    name = name or f"Tenant {next(_names)}"
    async with dbs.worker.transaction() as conn:
        tenant = await tenant_repo.create_tenant(conn, name=name, email=None)
    return TenantWithKey(tenant.id, name, await make_api_key(dbs, tenant.id, scopes))


async def operator_headers(dbs: Databases) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_api_key(dbs, None, [Scope.OPERATOR])}"}
