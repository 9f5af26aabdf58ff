"""The webhook endpoint's one statement (ADR 0024): it stores the event and, in the same round
trip, reads the engine's invoice the event names, by the engine's id from the metadata or else
by the Stripe id, so routing needs no second query. A metadata id that disagrees with the Stripe
object names no invoice; a duplicate answers like the first delivery."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import insert

from adapters.db import webhook_inbox as inbox
from adapters.db.tables import invoices
from billing.stripe_events import KnownInvoice
from tests.factories.subscriptions import make_subscription
from tests.factories.tenants import make_tenant
from tests.harness import Databases


async def _invoice(dbs: Databases, stripe_invoice_id: str) -> tuple[UUID, UUID, UUID]:
    """(tenant, subscription, invoice): an open invoice with one failed attempt."""
    tenant = await make_tenant(dbs)
    subscription_id = await make_subscription(dbs, tenant.id)
    invoice_id = uuid.uuid4()
    async with dbs.admin.transaction() as conn:
        await conn.execute(
            insert(invoices).values(
                id=invoice_id, tenant_id=tenant.id, subscription_id=subscription_id,
                status="open", billing_reason="subscription_cycle", billing_key=f"k:{invoice_id}",
                currency="usd", subtotal=900, total=900, amount_due=900, attempt_count=1,
                stripe_invoice_id=stripe_invoice_id, period_start=datetime(2032, 1, 1, tzinfo=UTC),
            )
        )  # fmt: skip
    return tenant.id, subscription_id, invoice_id


async def _store(dbs: Databases, **names: str | None) -> inbox.Stored:
    event_id = f"evt_{uuid.uuid4().hex}"
    return await _store_as(dbs, event_id, **names)


async def _store_as(dbs: Databases, event_id: str, **names: str | None) -> inbox.Stored:
    pool = await dbs.worker.raw_pool()
    async with pool.acquire() as connection:
        return await inbox.store_event(
            connection,
            event_id=event_id,
            event_type="invoice.paid",
            api_version=None,
            livemode=False,
            body=json.dumps({"id": event_id, "type": "invoice.paid"}).encode(),
            status=inbox.RECEIVED,
            **names,
        )


async def test_the_insert_reads_the_invoice_by_the_engine_id_or_the_stripe_id(
    dbs: Databases,
) -> None:
    stripe_id = f"in_{uuid.uuid4().hex[:12]}"
    tenant_id, subscription_id, invoice_id = await _invoice(dbs, stripe_id)
    expected = KnownInvoice(
        invoice_id=str(invoice_id),
        tenant_id=str(tenant_id),
        subscription_id=str(subscription_id),
        status="open",
        attempt_count=1,
    )

    by_engine_id = await _store(dbs, invoice_id=str(invoice_id), stripe_invoice_id=stripe_id)
    by_stripe_id = await _store(dbs, stripe_invoice_id=stripe_id)

    assert (by_engine_id.inserted, by_engine_id.status) == (True, inbox.RECEIVED)
    assert by_engine_id.known == expected
    assert by_stripe_id.known == expected


async def test_an_invoice_the_event_does_not_name_or_names_wrongly_is_not_placed(
    dbs: Databases,
) -> None:
    stripe_id = f"in_{uuid.uuid4().hex[:12]}"
    _, _, invoice_id = await _invoice(dbs, stripe_id)

    assert (await _store(dbs)).known is None  # not asked for
    assert (await _store(dbs, stripe_invoice_id="in_unknown")).known is None
    assert (await _store(dbs, invoice_id=str(uuid.uuid4()))).known is None
    assert (await _store(dbs, invoice_id="not-a-uuid")).known is None
    # Metadata naming this invoice on another Stripe object: not placed.
    mismatch = await _store(dbs, invoice_id=str(invoice_id), stripe_invoice_id="in_other")
    assert mismatch.inserted
    assert mismatch.known is None


async def test_a_duplicate_delivery_answers_with_the_row_and_the_invoice(dbs: Databases) -> None:
    stripe_id = f"in_{uuid.uuid4().hex[:12]}"
    _, _, invoice_id = await _invoice(dbs, stripe_id)
    event_id = f"evt_{uuid.uuid4().hex}"

    first = await _store_as(dbs, event_id, invoice_id=str(invoice_id))
    again = await _store_as(dbs, event_id, invoice_id=str(invoice_id))

    assert (first.inserted, again.inserted) == (True, False)
    assert again.status == first.status == inbox.RECEIVED
    assert first.known is not None
    assert again.known == first.known
    assert first.known.invoice_id == str(invoice_id)
