"""`billing seed`: load the catalog file, validate it, sync it into the plans table."""

from __future__ import annotations

import asyncio

from adapters.db.plans import sync_catalog
from adapters.db.session import Database
from billing.catalog import load_catalog
from billing.errors import CatalogError
from config import Settings


async def _sync(settings: Settings) -> None:
    catalog = load_catalog(settings.catalog_path)
    db = Database(settings.require_database_url(), pool_size=1)
    try:
        async with db.transaction() as conn:
            synced = await sync_catalog(conn, catalog)
    finally:
        await db.dispose()
    for plan in synced:
        state = "new version" if plan.created else "unchanged"
        print(f"catalog: {plan.code} v{plan.version} ({state})")  # noqa: T201 - CLI output


def sync_catalog_cli(settings: Settings) -> None:
    try:
        asyncio.run(_sync(settings))
    except CatalogError as error:
        raise SystemExit(f"catalog: {error}") from error
