"""The append-only audit log (the app and worker roles may only INSERT and SELECT it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import audit_log


async def record_audit(
    conn: AsyncConnection,
    *,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str | None,
    tenant_id: UUID | None,
    details: Mapping[str, Any] | None = None,
) -> None:
    await conn.execute(
        audit_log.insert().values(
            actor=actor,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            tenant_id=tenant_id,
            details=dict(details or {}),
        )
    )
