"""Tenant isolation is enforced by Postgres for the role the API connects as (billing_app).

Rows are written for two tenants as the owner; then, connected as the app role with tenant A set
for the transaction, every tenant table is probed: B's rows are invisible, inserting a row for B
fails, updating B's rows changes nothing. The audit log is append-only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db import tables as t
from tests.harness import Databases

NOW = datetime(2026, 1, 15, tzinfo=UTC)

RowBuilder = Callable[[UUID, "Ids"], dict[str, Any]]


class Ids:
    """Per-tenant parent rows the child tables point at."""

    def __init__(self, plan_id: UUID) -> None:
        self.plan_id = plan_id
        self.subscription_id = uuid.uuid4()
        self.invoice_id = uuid.uuid4()
        self.endpoint_id = uuid.uuid4()


def _u() -> str:
    return uuid.uuid4().hex


# One valid row per tenant table (the tenants table itself is keyed by id and probed apart).
BUILDERS: dict[str, RowBuilder] = {
    "tenant_rate_limits": lambda tid, ids: {
        "tenant_id": tid,
        "route_class": "read",
        # Generous: tests that seed every table (the export) then poll reads must not be
        # throttled by their own seed (10 made the export test's polling flaky).
        "per_window": 100_000,
        "actor": "test",
    },
    "api_keys": lambda tid, ids: {
        "tenant_id": tid,
        "name": "k",
        "prefix": "bk_x",
        "key_hash": uuid.uuid4().bytes,
        "scopes": ["billing.read"],
        "created_by": "test",
    },
    "entitlement_overrides": lambda tid, ids: {
        "tenant_id": tid,
        "metric": f"m{_u()}",
        "included": 5,
        "reason": "r",
        "actor": "a",
    },
    "subscriptions": lambda tid, ids: {
        "id": ids.subscription_id,
        "tenant_id": tid,
        "plan_id": ids.plan_id,
        "plan_code": "standard",
        "interval": "month",
        "currency": "usd",
        "status": "canceled",
        "workflow_id": f"subscription:{_u()}",
    },
    "subscription_changes": lambda tid, ids: {
        "tenant_id": tid,
        "subscription_id": ids.subscription_id,
        "kind": "created",
        "effective_at": NOW,
        "actor": "a",
        "change_key": _u(),
    },
    "usage_events": lambda tid, ids: {
        "tenant_id": tid,
        "metric": "api_calls",
        "quantity": 1,
        "occurred_at": NOW,
        "idempotency_key": _u(),
    },
    "usage_daily_totals": lambda tid, ids: {
        "tenant_id": tid,
        "metric": f"m{_u()}",
        "usage_date": date(2026, 1, 15),
        "quantity": 1,
    },
    "usage_period_counters": lambda tid, ids: {
        "tenant_id": tid,
        "metric": f"m{_u()}",
        "period_start": NOW,
        "period_end": NOW,
        "quantity": 1,
    },
    "invoices": lambda tid, ids: {
        "id": ids.invoice_id,
        "tenant_id": tid,
        "subscription_id": ids.subscription_id,
        "status": "open",
        "billing_reason": "subscription_cycle",
        "billing_key": _u(),
        "currency": "usd",
        "subtotal": 100,
        "total": 100,
        "amount_due": 100,
    },
    "invoice_items": lambda tid, ids: {
        "tenant_id": tid,
        "invoice_id": ids.invoice_id,
        "position": int(uuid.uuid4().int % 1_000_000),
        "kind": "base",
        "description": "d",
        "amount": 100,
        "currency": "usd",
    },
    "payment_methods": lambda tid, ids: {
        "tenant_id": tid,
        "stripe_payment_method_id": f"pm_{_u()}",
        "brand": "visa",
        "last4": "4242",
    },
    "webhook_events": lambda tid, ids: {
        "tenant_id": tid,
        "stripe_event_id": f"evt_{_u()}",
        "type": "invoice.paid",
        "payload": {},
    },
    "grace_periods": lambda tid, ids: {
        "tenant_id": tid,
        "kind": "payment",
        "subject": "x",
        "workflow_id": f"grace:{_u()}",
        "started_at": NOW,
        "expires_at": NOW,
    },
    "dunning_attempts": lambda tid, ids: {
        "tenant_id": tid,
        "invoice_id": ids.invoice_id,
        "attempt": int(uuid.uuid4().int % 1_000_000),
        "idempotency_key": f"pay:{_u()}",
        "attempted_at": NOW,
        "outcome": "declined",
    },
    "notification_endpoints": lambda tid, ids: {
        "id": ids.endpoint_id,
        "tenant_id": tid,
        "url": "https://example.invalid/hook",
        "secret": "whsec_x",
    },
    "notification_deliveries": lambda tid, ids: {
        "tenant_id": tid,
        "endpoint_id": ids.endpoint_id,
        "message_id": f"msg_{_u()}",
        "event_type": "invoice.paid",
        "payload": {},
    },
    "audit_log": lambda tid, ids: {
        "tenant_id": tid,
        "actor": "a",
        "action": "x",
        "subject_type": "y",
    },
    "credit_notes": lambda tid, ids: {
        "tenant_id": tid,
        "invoice_id": ids.invoice_id,
        "number": f"CN-TEST-{_u()}",
        "amount": 50,
        "currency": "usd",
        "reason": "r",
        "source": "operator",
        "idempotency_key": f"k-{_u()}",
        "refund_status": "pending",
        "actor": "a",
    },
}

TENANT_TABLE_NAMES = sorted(BUILDERS)


def test_every_tenant_table_is_probed() -> None:
    """A new tenant table must be added to BUILDERS (and so to these checks)."""
    declared = {table.name for table in t.TENANT_TABLES} - {"tenants"}
    assert declared == set(BUILDERS)


async def _seed(conn: AsyncConnection, tenant_id: UUID, plan_id: UUID) -> Ids:
    ids = Ids(plan_id)
    await conn.execute(t.tenants.insert().values(id=tenant_id, name=f"t-{tenant_id}"))
    parents = ("subscriptions", "invoices", "notification_endpoints")  # before their children
    order = [
        "subscriptions",
        "invoices",
        "notification_endpoints",
        *[n for n in TENANT_TABLE_NAMES if n not in parents],
    ]
    for name in order:
        await conn.execute(
            t.metadata.tables[name].insert().values(**BUILDERS[name](tenant_id, ids))
        )
    return ids


@pytest.fixture
async def two_tenants(dbs: Databases) -> tuple[UUID, UUID, Ids, Ids]:
    a, b = uuid.uuid4(), uuid.uuid4()
    async with dbs.admin.transaction() as conn:
        plan_id = (await conn.execute(select(t.plans.c.id).limit(1))).scalar_one()
        ids_a = await _seed(conn, a, plan_id)
        ids_b = await _seed(conn, b, plan_id)
    return a, b, ids_a, ids_b


def _is_rls_or_privilege_refusal(error: DBAPIError) -> bool:
    # 42501 insufficient_privilege covers both "permission denied" and RLS WITH CHECK failures.
    return getattr(error.orig, "sqlstate", None) == "42501"


@pytest.mark.parametrize("table_name", TENANT_TABLE_NAMES)
async def test_app_role_sees_only_its_tenant(
    dbs: Databases, two_tenants: tuple[UUID, UUID, Ids, Ids], table_name: str
) -> None:
    a, b, _, _ = two_tenants
    table = t.metadata.tables[table_name]
    async with dbs.app.tenant_transaction(a) as conn:
        tenant_ids = set((await conn.execute(select(table.c.tenant_id))).scalars())
    assert tenant_ids == {a}


@pytest.mark.parametrize("table_name", TENANT_TABLE_NAMES)
async def test_app_role_cannot_insert_for_another_tenant(
    dbs: Databases, two_tenants: tuple[UUID, UUID, Ids, Ids], table_name: str
) -> None:
    a, b, _, ids_b = two_tenants
    table = t.metadata.tables[table_name]
    fresh = Ids(ids_b.plan_id)
    fresh.subscription_id, fresh.invoice_id, fresh.endpoint_id = (
        ids_b.subscription_id if table_name != "subscriptions" else uuid.uuid4(),
        ids_b.invoice_id if table_name != "invoices" else uuid.uuid4(),
        ids_b.endpoint_id if table_name != "notification_endpoints" else uuid.uuid4(),
    )
    row = BUILDERS[table_name](b, fresh)
    with pytest.raises(DBAPIError) as caught:
        async with dbs.app.tenant_transaction(a) as conn:
            await conn.execute(table.insert().values(**row))
    assert _is_rls_or_privilege_refusal(caught.value), caught.value
    async with dbs.admin.transaction() as conn:
        count = (
            await conn.execute(
                select(func.count()).select_from(table).where(table.c.tenant_id == b)
            )
        ).scalar_one()
    assert count == 1


@pytest.mark.parametrize("table_name", TENANT_TABLE_NAMES)
async def test_app_role_cannot_update_another_tenants_rows(
    dbs: Databases, two_tenants: tuple[UUID, UUID, Ids, Ids], table_name: str
) -> None:
    a, b, _, _ = two_tenants
    table = t.metadata.tables[table_name]
    async with dbs.admin.transaction() as conn:
        may_update = (
            await conn.execute(
                text("SELECT has_table_privilege('billing_app', :t, 'UPDATE')"), {"t": table_name}
            )
        ).scalar_one()
    steal = update(table).where(table.c.tenant_id == b).values(tenant_id=a)
    if may_update:
        async with dbs.app.tenant_transaction(a) as conn:
            assert (await conn.execute(steal)).rowcount == 0
    else:
        with pytest.raises(DBAPIError) as caught:
            async with dbs.app.tenant_transaction(a) as conn:
                await conn.execute(steal)
        assert _is_rls_or_privilege_refusal(caught.value)
    async with dbs.admin.transaction() as conn:
        owners = set((await conn.execute(select(table.c.tenant_id))).scalars())
    assert owners == {a, b}


async def test_tenants_table_is_isolated(
    dbs: Databases, two_tenants: tuple[UUID, UUID, Ids, Ids]
) -> None:
    a, b, _, _ = two_tenants
    async with dbs.app.tenant_transaction(a) as conn:
        visible = set((await conn.execute(select(t.tenants.c.id))).scalars())
        renamed = await conn.execute(
            update(t.tenants).where(t.tenants.c.id == b).values(name="stolen")
        )
    assert visible == {a}
    assert renamed.rowcount == 0
    with pytest.raises(DBAPIError) as caught:
        async with dbs.app.tenant_transaction(a) as conn:
            await conn.execute(t.tenants.insert().values(id=uuid.uuid4(), name="new"))
    assert _is_rls_or_privilege_refusal(caught.value)


async def test_no_tenant_set_sees_nothing(
    dbs: Databases, two_tenants: tuple[UUID, UUID, Ids, Ids]
) -> None:
    async with dbs.app.transaction() as conn:
        assert (await conn.execute(select(func.count()).select_from(t.invoices))).scalar_one() == 0


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log"]
)
@pytest.mark.parametrize("role", ["app", "worker", "admin"])
async def test_audit_log_is_append_only(
    dbs: Databases, two_tenants: tuple[UUID, UUID, Ids, Ids], statement: str, role: str
) -> None:
    a, _, _, _ = two_tenants
    db = {"app": dbs.app, "worker": dbs.worker, "admin": dbs.admin}[role]
    with pytest.raises(DBAPIError) as caught:
        async with db.tenant_transaction(a) as conn:
            await conn.execute(text(statement))
    assert _is_rls_or_privilege_refusal(caught.value)
    async with dbs.admin.transaction() as conn:
        assert (await conn.execute(select(func.count()).select_from(t.audit_log))).scalar_one() == 2


async def test_plan_versions_are_immutable(dbs: Databases) -> None:
    for db in (dbs.worker, dbs.admin):
        with pytest.raises(DBAPIError) as caught:
            async with db.transaction() as conn:
                await conn.execute(text("UPDATE plans SET monthly_price = 1"))
        assert _is_rls_or_privilege_refusal(caught.value)
