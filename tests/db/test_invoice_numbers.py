"""Invoice numbers (ADR 0015): allocated at finalisation in the finalising transaction, per
series (`INV-{year}`, `ZERO-{year}` for zero totals), gapless and unique under concurrent
finalisations from several workers, and given back when the finalisation rolls back."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from uuid import UUID

import pytest
from sqlalchemy import insert, select, update

from adapters.db import invoices as invoices_repo
from adapters.db.tables import invoices
from tests.factories.subscriptions import make_subscription
from tests.factories.tenants import make_tenant
from tests.harness import Databases

YEAR = 2031  # a year no other test bills in


async def _open_invoice(dbs: Databases, tenant_id: UUID, subscription_id: UUID, total: int) -> UUID:
    invoice_id = uuid.uuid4()
    async with dbs.admin.transaction() as conn:
        await conn.execute(
            insert(invoices).values(
                id=invoice_id, tenant_id=tenant_id, subscription_id=subscription_id,
                status="open", billing_reason="subscription_cycle", billing_key=f"k:{invoice_id}",
                currency="usd", subtotal=total, total=total, amount_due=total,
                period_start=datetime(YEAR, 1, 1, tzinfo=UTC),
            )
        )  # fmt: skip
    return invoice_id


async def _finalise(dbs: Databases, tenant_id: UUID, invoice_id: UUID) -> str | None:
    """As the activity does: the worker's tenant-scoped transaction."""
    async with dbs.worker.tenant_transaction(tenant_id) as conn:
        return await invoices_repo.assign_number(conn, invoice_id)


async def test_concurrent_finalisations_get_gapless_unique_numbers(dbs: Databases) -> None:
    tenants = [await make_tenant(dbs) for _ in range(4)]
    subs = {t.id: await make_subscription(dbs, t.id) for t in tenants}
    work = [
        (t.id, await _open_invoice(dbs, t.id, subs[t.id], 1000)) for t in tenants for _ in range(6)
    ]
    zero = (tenants[0].id, await _open_invoice(dbs, tenants[0].id, subs[tenants[0].id], 0))

    numbers = await asyncio.gather(*(_finalise(dbs, t, i) for t, i in [*work, zero]))

    regular = sorted(n for n in numbers[:-1] if n is not None)
    assert regular == [f"INV-{YEAR}-{k:06d}" for k in range(1, len(work) + 1)]
    assert numbers[-1] == f"ZERO-{YEAR}-000001"
    # Numbered once: finalising again changes nothing.
    assert await _finalise(dbs, *work[0]) is None


async def test_a_rolled_back_finalisation_gives_its_number_back(dbs: Databases) -> None:
    tenant = await make_tenant(dbs)
    sub = await make_subscription(dbs, tenant.id)
    first = await _open_invoice(dbs, tenant.id, sub, 500)
    second = await _open_invoice(dbs, tenant.id, sub, 500)
    allocated: list[str | None] = []

    async def fails_after_allocating() -> None:
        async with dbs.worker.tenant_transaction(tenant.id) as conn:
            allocated.append(await invoices_repo.assign_number(conn, first))
            raise RuntimeError("the finalising transaction fails after the allocation")

    with pytest.raises(RuntimeError):
        await fails_after_allocating()
    assert allocated == [f"INV-{YEAR}-000001"]
    assert await _finalise(dbs, tenant.id, second) == f"INV-{YEAR}-000001"
    assert await _finalise(dbs, tenant.id, first) == f"INV-{YEAR}-000002"


async def test_a_draft_gets_no_number(dbs: Databases) -> None:
    tenant = await make_tenant(dbs)
    sub = await make_subscription(dbs, tenant.id)
    draft = await _open_invoice(dbs, tenant.id, sub, 500)
    async with dbs.admin.transaction() as conn:
        await conn.execute(update(invoices).where(invoices.c.id == draft).values(status="draft"))
    assert await _finalise(dbs, tenant.id, draft) is None
    async with dbs.admin.transaction() as conn:
        number = await conn.scalar(select(invoices.c.number).where(invoices.c.id == draft))
    assert number is None
