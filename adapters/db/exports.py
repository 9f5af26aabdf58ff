"""Reading one tenant's rows of a table for its export (ADR 0016), streamed with a server-side
cursor. The caller's transaction is the tenant's (RLS narrows it to that tenant); the query
filters by tenant too."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import metadata
from billing.exports import EXCLUDED_COLUMNS, jsonable


async def tenant_rows(
    conn: AsyncConnection, table_name: str, tenant_id: UUID, batch: int = 1000
) -> AsyncIterator[dict[str, Any]]:
    table = metadata.tables[table_name]
    excluded = EXCLUDED_COLUMNS.get(table_name, frozenset())
    columns = [c for c in table.columns if c.name not in excluded]
    owner = table.c.id if table_name == "tenants" else table.c.tenant_id
    order = list(table.primary_key.columns)
    query = select(*columns).where(owner == tenant_id).order_by(*order)
    result = await conn.stream(query.execution_options(yield_per=batch))
    async for row in result:
        yield {key: jsonable(value) for key, value in row._mapping.items()}
