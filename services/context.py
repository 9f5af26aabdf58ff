"""What the use cases need at run time, built once by the API's lifespan (or handed in by
tests)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client

from adapters.db.quota_cache import QuotaRowCache
from adapters.db.session import Database
from billing.catalog import Catalog
from billing.payments import StripeGateway
from config import Settings


@dataclass
class Services:
    settings: Settings
    # RLS-enforced app role: every tenant request runs here with app.tenant_id set.
    tenant_db: Database
    # BYPASSRLS worker role: key lookup (before the tenant is known), operator endpoints, inbox.
    system_db: Database
    temporal: Client
    stripe: StripeGateway
    catalog: Catalog
    # Per-process caches built on first use (API key cache, parsed plan versions, last-known
    # quota caps): they live and die with this object, never in module globals.
    extras: dict[str, Any] = field(default_factory=dict)
    # The API's clock (update deadlines, preview instants). Tests align it with the
    # time-skipping server's clock.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    # Quota-check rows, served only while the app's lifespan keeps a LISTEN connection up
    # (ADR 0003, "The quota cache"); without it (in-process test transports) every check reads
    # Postgres.
    quota_cache: QuotaRowCache = field(default_factory=lambda: QuotaRowCache(ttl_seconds=0))
