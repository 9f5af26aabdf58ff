"""Tenants and their API keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import api_keys, tenants


@dataclass(frozen=True, slots=True)
class TenantRow:
    id: UUID
    name: str
    email: str | None
    access_status: str
    stripe_customer_id: str | None
    created_at: datetime
    suspension_reason: str | None = None
    billing_details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApiKeyRow:
    id: UUID
    tenant_id: UUID | None
    name: str
    prefix: str
    scopes: tuple[str, ...]
    revoked_at: datetime | None
    created_at: datetime


_TENANT_COLUMNS = (
    tenants.c.id,
    tenants.c.name,
    tenants.c.email,
    tenants.c.access_status,
    tenants.c.stripe_customer_id,
    tenants.c.created_at,
    tenants.c.suspension_reason,
    tenants.c.billing_details,
)
_KEY_COLUMNS = (
    api_keys.c.id,
    api_keys.c.tenant_id,
    api_keys.c.name,
    api_keys.c.prefix,
    api_keys.c.scopes,
    api_keys.c.revoked_at,
    api_keys.c.created_at,
)


def _key(row: object) -> ApiKeyRow:
    m = row._mapping  # type: ignore[attr-defined]
    return ApiKeyRow(**{**m, "scopes": tuple(m["scopes"])})


async def create_tenant(conn: AsyncConnection, *, name: str, email: str | None) -> TenantRow:
    row = (
        await conn.execute(
            tenants.insert().values(name=name, email=email).returning(*_TENANT_COLUMNS)
        )
    ).one()
    return TenantRow(**row._mapping)


async def get_tenant(conn: AsyncConnection, tenant_id: UUID) -> TenantRow | None:
    row = (await conn.execute(select(*_TENANT_COLUMNS).where(tenants.c.id == tenant_id))).first()
    return TenantRow(**row._mapping) if row else None


async def set_stripe_customer(conn: AsyncConnection, tenant_id: UUID, customer_id: str) -> None:
    await conn.execute(
        update(tenants)
        .where(tenants.c.id == tenant_id)
        .values(stripe_customer_id=customer_id, updated_at=func.now())
    )


async def set_stripe_customer_if_unset(
    conn: AsyncConnection, tenant_id: UUID, customer_id: str
) -> None:
    await conn.execute(
        update(tenants)
        .where(tenants.c.id == tenant_id, tenants.c.stripe_customer_id.is_(None))
        .values(stripe_customer_id=customer_id, updated_at=func.now())
    )


async def clear_stripe_customer(conn: AsyncConnection, tenant_id: UUID, customer_id: str) -> bool:
    """The tenant's Stripe customer was deleted in Stripe; False if it was not this one."""
    result = await conn.execute(
        update(tenants)
        .where(tenants.c.id == tenant_id, tenants.c.stripe_customer_id == customer_id)
        .values(stripe_customer_id=None, updated_at=func.now())
    )
    return bool(result.rowcount)


async def tenant_for_stripe_customer(conn: AsyncConnection, customer_id: str) -> UUID | None:
    found: UUID | None = await conn.scalar(
        select(tenants.c.id).where(tenants.c.stripe_customer_id == customer_id)
    )
    return found


async def insert_api_key(
    conn: AsyncConnection,
    *,
    tenant_id: UUID | None,
    name: str,
    prefix: str,
    key_hash: bytes,
    scopes: Sequence[str],
    created_by: str,
) -> ApiKeyRow:
    row = (
        await conn.execute(
            api_keys.insert()
            .values(
                tenant_id=tenant_id,
                name=name,
                prefix=prefix,
                key_hash=key_hash,
                scopes=list(scopes),
                created_by=created_by,
            )
            .returning(*_KEY_COLUMNS)
        )
    ).one()
    return _key(row)


async def find_api_key(conn: AsyncConnection, key_hash: bytes) -> ApiKeyRow | None:
    row = (await conn.execute(select(*_KEY_COLUMNS).where(api_keys.c.key_hash == key_hash))).first()
    return _key(row) if row else None


async def get_api_key(conn: AsyncConnection, key_id: UUID) -> ApiKeyRow | None:
    row = (await conn.execute(select(*_KEY_COLUMNS).where(api_keys.c.id == key_id))).first()
    return _key(row) if row else None


async def list_api_keys(conn: AsyncConnection, tenant_id: UUID | None) -> list[ApiKeyRow]:
    where = (
        api_keys.c.tenant_id.is_(None) if tenant_id is None else api_keys.c.tenant_id == tenant_id
    )
    rows = await conn.execute(select(*_KEY_COLUMNS).where(where).order_by(api_keys.c.created_at))
    return [_key(r) for r in rows]


async def revoke_api_key(conn: AsyncConnection, key_id: UUID) -> ApiKeyRow | None:
    row = (
        await conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id)
            .values(
                revoked_at=func.coalesce(api_keys.c.revoked_at, func.now()), updated_at=func.now()
            )
            .returning(*_KEY_COLUMNS)
        )
    ).first()
    return _key(row) if row else None


async def active_operator_key_exists(conn: AsyncConnection) -> bool:
    stmt = select(func.count()).where(
        api_keys.c.tenant_id.is_(None), api_keys.c.revoked_at.is_(None)
    )
    return bool((await conn.execute(stmt)).scalar_one())


async def set_billing_details(
    conn: AsyncConnection, tenant_id: UUID, details: dict[str, Any]
) -> dict[str, Any] | None:
    """Replace the tenant's billing details; the previous ones (None: no such tenant)."""
    before = await conn.scalar(select(tenants.c.billing_details).where(tenants.c.id == tenant_id))
    if before is None:
        return None
    await conn.execute(
        update(tenants)
        .where(tenants.c.id == tenant_id)
        .values(billing_details=details, updated_at=func.now())
    )
    return dict(before)
