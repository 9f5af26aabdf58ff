"""Reading and exporting the audit trail (ADR 0017): operators across tenants, a tenant its own
rows (row-level security decides)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any, Literal
from uuid import UUID

from adapters.db import audit as repo
from adapters.db.audit import AuditFilter
from adapters.db.session import Database
from billing.exports import jsonable
from services.context import Services

Format = Literal["jsonl", "csv"]
CSV_COLUMNS = [
    "id", "created_at", "tenant_id", "actor", "action", "subject_type", "subject_id",
    "request_id", "details",
]  # fmt: skip


async def page(
    services: Services, f: AuditFilter, *, limit: int, after: int | None, tenant: UUID | None
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of rows, oldest first; for a tenant, read as the tenant (RLS)."""
    db = services.tenant_db if tenant is not None else services.system_db
    transaction = db.tenant_transaction(tenant) if tenant is not None else db.transaction()
    async with transaction as conn:  # operators: every tenant's rows
        rows = await repo.page(conn, f, limit=limit + 1, after_id=after)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more and rows else None)


def export(
    services: Services, f: AuditFilter, fmt: Format, tenant: UUID | None
) -> AsyncIterator[bytes]:
    """Every matching row as JSON lines or CSV, streamed from a server-side cursor; for a
    tenant, read as the tenant (RLS)."""
    if tenant is not None:
        return export_rows(services.tenant_db, f, fmt, tenant)
    return export_rows(services.system_db, f, fmt, None)


async def export_rows(
    db: Database, f: AuditFilter, fmt: Format, tenant: UUID | None
) -> AsyncIterator[bytes]:
    """`export` on a given database (the CLI's worker role)."""
    transaction = db.tenant_transaction(tenant) if tenant is not None else db.transaction()
    async with transaction as conn:  # operators: every tenant's rows
        if fmt == "csv":
            yield _csv_line(CSV_COLUMNS)
        async for row in repo.stream(conn, f):
            values = jsonable(row)
            if fmt == "jsonl":
                yield json.dumps(values, sort_keys=True).encode() + b"\n"
            else:
                values["details"] = json.dumps(values["details"], sort_keys=True)
                yield _csv_line([values[c] for c in CSV_COLUMNS])


def _csv_line(values: list[Any]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(["" if v is None else v for v in values])
    return buffer.getvalue().encode()
