"""What a tenant's data export holds (ADR 0016): every table the engine keeps about a tenant,
one JSON-lines file each, minus secrets. Pure."""

from __future__ import annotations

import base64
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

# In the order they are written. Everything the engine holds about one tenant.
EXPORT_TABLES: tuple[str, ...] = (
    "tenants",
    "api_keys",
    "entitlement_overrides",
    "tenant_rate_limits",
    "subscriptions",
    "subscription_changes",
    "invoices",
    "invoice_items",
    "credit_notes",
    "payment_methods",
    "usage_events",
    "usage_daily_totals",
    "usage_period_counters",
    "grace_periods",
    "dunning_attempts",
    "notification_endpoints",
    "notification_deliveries",
    "webhook_events",
    "audit_log",
)

# Never exported: an API key's hash and an endpoint's signing secret are credentials, not data
# about the tenant. Payment methods hold only brand, last4 and expiry in the first place.
EXCLUDED_COLUMNS: dict[str, frozenset[str]] = {
    "api_keys": frozenset({"key_hash"}),
    "notification_endpoints": frozenset({"secret"}),
}


def jsonable(value: Any) -> Any:
    """A column value as JSON: ids and instants as strings, exact numbers as strings."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def export_workflow_id(tenant_id: str, export_id: str) -> str:
    return f"export:{tenant_id}:{export_id}"
