"""`billing operator-key`: bootstrap an operator API key (printed once, stored hashed)."""

from __future__ import annotations

import asyncio

from adapters.api_keys import Scope, display_prefix, generate_key, hash_key
from adapters.db import tenants as tenant_repo
from adapters.db.audit import record_audit
from adapters.db.session import Database
from config import Settings


async def _create(settings: Settings, *, if_absent: bool, name: str) -> str | None:
    db = Database(settings.require_database_url(), pool_size=1)
    try:
        async with db.transaction() as conn:
            if if_absent and await tenant_repo.active_operator_key_exists(conn):
                return None
            key = generate_key()
            row = await tenant_repo.insert_api_key(
                conn,
                tenant_id=None,
                name=name,
                prefix=display_prefix(key),
                key_hash=hash_key(key, settings.api_key_pepper.get_secret_value()),
                scopes=[Scope.OPERATOR],
                created_by="cli",
            )
            await record_audit(
                conn,
                actor="cli",
                action="api_key.created",
                subject_type="api_key",
                subject_id=str(row.id),
                tenant_id=None,
                before=None,
                after={"scopes": [Scope.OPERATOR], "name": name},
            )
            return key
    finally:
        await db.dispose()


def operator_key_cli(settings: Settings, *, if_absent: bool, name: str) -> int:
    key = asyncio.run(_create(settings, if_absent=if_absent, name=name))
    if key is None:
        print(  # noqa: T201 - CLI output
            "operator key: one already exists (keys are shown once, at creation); "
            "create another with `billing operator-key`"
        )
    else:
        print(f"operator key: {key}")  # noqa: T201 - CLI output
    return 0
