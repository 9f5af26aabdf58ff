"""`billing audit`: export the audit trail (the twin of `GET /api/billing/operator/audit/export`),
read from Postgres as the worker role and written to standard output."""

from __future__ import annotations

import asyncio
import sys
from datetime import datetime
from typing import BinaryIO
from uuid import UUID

from adapters.db.audit import AuditFilter
from adapters.db.session import Database
from config import WORKER_ROLE, Settings
from services.audit import Format, export_rows


def audit_export(
    settings: Settings,
    *,
    fmt: Format,
    tenant: str | None,
    actor: str | None,
    action: str | None,
    since: str | None,
    until: str | None,
    out: BinaryIO | None = None,
) -> int:
    try:
        f = AuditFilter(
            tenant_id=UUID(tenant) if tenant else None,
            actor=actor,
            action=action,
            since=datetime.fromisoformat(since) if since else None,
            until=datetime.fromisoformat(until) if until else None,
        )
    except ValueError as error:
        print(f"billing audit: {error}", file=sys.stderr)
        return 2
    target = out if out is not None else sys.stdout.buffer

    async def run() -> None:
        db = Database(settings.role_url(WORKER_ROLE), pool_size=1)
        try:
            async for chunk in export_rows(db, f, fmt, None):
                target.write(chunk)
        finally:
            await db.dispose()

    asyncio.run(run())
    target.flush()
    return 0
