"""The payment grace window's Postgres effects: suspension with its `tenant.suspended` notice in
the same transaction (once, however often the activity is retried), and the settlement rule (a
tenant with another expired payment window stays suspended)."""

from __future__ import annotations

from uuid import UUID, uuid4

from sqlalchemy import select, text

from activities.usage_store import UsageStore
from adapters.db.tables import notification_deliveries, notification_endpoints, tenants
from tests.factories.tenants import make_tenant
from tests.harness import Databases
from workflows.grace_io import GraceEffectInput, PaymentSettlement


def store(dbs: Databases) -> UsageStore:
    return UsageStore(dbs.worker, ())


async def status(dbs: Databases, tenant_id: UUID) -> str:
    async with dbs.admin.transaction() as conn:
        value = await conn.scalar(select(tenants.c.access_status).where(tenants.c.id == tenant_id))
    return str(value)


async def expired_window(dbs: Databases, tenant_id: UUID, invoice_id: str) -> str:
    workflow_id = f"grace:{tenant_id}:payment:{invoice_id}"
    async with dbs.admin.transaction() as conn:
        await conn.execute(
            text(
                "INSERT INTO grace_periods (tenant_id, kind, subject, workflow_id, started_at, "
                "expires_at, resolved_at, resolution, actor) VALUES (:t, 'payment', :s, :w, "
                "now() - interval '7 days', now(), now(), 'expired', 'test')"
            ),
            {"t": tenant_id, "s": invoice_id, "w": workflow_id},
        )
    return workflow_id


async def test_suspension_enqueues_one_notice(dbs: Databases) -> None:
    tenant = await make_tenant(dbs)
    async with dbs.admin.transaction() as conn:
        await conn.execute(
            notification_endpoints.insert().values(
                tenant_id=tenant.id, url="http://127.0.0.1:9/hook", secret="whsec_test"
            )
        )
    invoice_id = str(uuid4())
    effect = GraceEffectInput(str(tenant.id), "payment", invoice_id, "", "workflow:grace:test")
    assert (await store(dbs).apply_grace_expiry(effect)).applied
    assert not (await store(dbs).apply_grace_expiry(effect)).applied  # a retry changes nothing
    assert await status(dbs, tenant.id) == "suspended"
    async with dbs.admin.transaction() as conn:
        rows = (
            await conn.execute(
                select(
                    notification_deliveries.c.event_type, notification_deliveries.c.message_id
                ).where(notification_deliveries.c.tenant_id == tenant.id)
            )
        ).all()
        audits = await conn.scalar(
            text("SELECT count(*) FROM audit_log WHERE tenant_id = :t AND action = :a"),
            {"t": tenant.id, "a": "tenant.suspended"},
        )
    assert [tuple(r) for r in rows] == [("tenant.suspended", f"tenant.suspended:{invoice_id}")]
    assert audits == 1


async def test_settling_one_of_two_expired_windows_keeps_the_suspension(dbs: Databases) -> None:
    tenant = await make_tenant(dbs)
    first = await expired_window(dbs, tenant.id, "inv_a")
    second = await expired_window(dbs, tenant.id, "inv_b")
    effect = GraceEffectInput(str(tenant.id), "payment", "inv_a", "", "workflow:x")
    await store(dbs).apply_grace_expiry(effect)

    paid_a = PaymentSettlement(first, str(tenant.id), "inv_a", "paid", "t", lift=True)
    assert not (await store(dbs).settle_payment_grace(paid_a)).reactivated
    assert await status(dbs, tenant.id) == "suspended"
    # Closed unpaid: the window is settled but lifts nothing.
    voided_b = PaymentSettlement(second, str(tenant.id), "inv_b", "voided", "t", lift=False)
    assert not (await store(dbs).settle_payment_grace(voided_b)).reactivated
    assert await status(dbs, tenant.id) == "suspended"


async def test_paying_the_last_expired_window_reactivates(dbs: Databases) -> None:
    tenant = await make_tenant(dbs)
    only = await expired_window(dbs, tenant.id, "inv_a")
    await store(dbs).apply_grace_expiry(
        GraceEffectInput(str(tenant.id), "payment", "inv_a", "", "workflow:x")
    )
    paid = PaymentSettlement(only, str(tenant.id), "inv_a", "paid", "api_key:k", lift=True)
    assert (await store(dbs).settle_payment_grace(paid)).reactivated
    assert not (await store(dbs).settle_payment_grace(paid)).reactivated  # retried: no-op
    assert await status(dbs, tenant.id) == "active"
    async with dbs.admin.transaction() as conn:
        row = (
            await conn.execute(
                text("SELECT resolution, actor FROM grace_periods WHERE workflow_id = :w"),
                {"w": only},
            )
        ).one()
    assert tuple(row) == ("paid", "api_key:k")


async def test_the_suspension_marks_its_window_in_force_in_the_same_transaction(
    dbs: Databases,
) -> None:
    tenant = await make_tenant(dbs)
    workflow_id = await expired_window(dbs, tenant.id, "inv_a")
    async with dbs.admin.transaction() as conn:
        await conn.execute(
            text(
                "UPDATE grace_periods SET resolution = NULL, resolved_at = NULL "
                "WHERE workflow_id = :w"
            ),
            {"w": workflow_id},
        )
    await store(dbs).apply_grace_expiry(
        GraceEffectInput(str(tenant.id), "payment", "inv_a", "", "operator:k", workflow_id, "ended")
    )
    async with dbs.admin.transaction() as conn:
        row = (
            await conn.execute(
                text("SELECT resolution, actor FROM grace_periods WHERE workflow_id = :w"),
                {"w": workflow_id},
            )
        ).one()
    assert tuple(row) == ("ended", "operator:k")
    # So a settlement of another window now finds this one holding the suspension.
    other = await expired_window(dbs, tenant.id, "inv_b")
    paid = PaymentSettlement(other, str(tenant.id), "inv_b", "paid", "t", lift=True)
    assert not (await store(dbs).settle_payment_grace(paid)).reactivated
