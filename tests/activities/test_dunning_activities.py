"""Dunning activities against real Postgres and the Stripe fake: each one is safe to retry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import ColumnElement, Table, func, select
from temporalio.exceptions import ApplicationError

from activities.dunning import DunningStore, DunningStripeActivities
from adapters.db.tables import dunning_attempts, invoices, notification_deliveries
from adapters.stripe_fake import FakeStripeGateway
from tests.factories.invoices import UnpaidInvoice, make_unpaid_invoice
from tests.harness import Databases
from workflows.dunning_io import FinalActionInput, RecordAttemptInput, RetryPaymentInput
from workflows.shared_io import DunningNotification, InvoiceProjection, RereadInvoiceInput


def _attempt(inv: UnpaidInvoice, attempt: int, outcome: str = "declined") -> RecordAttemptInput:
    return RecordAttemptInput(
        tenant_id=str(inv.tenant_id),
        invoice_id=str(inv.invoice_id),
        attempt=attempt,
        idempotency_key=f"pay:{inv.invoice_id}:{attempt}",
        attempted_at=datetime(2026, 11, 25, tzinfo=UTC).isoformat(),
        outcome=outcome,
        decline_code="card_declined",
        notifications=[
            DunningNotification(
                "invoice.payment_failed",
                f"invoice.payment_failed:{inv.invoice_id}:{attempt}",
                {"hosted_invoice_url": inv.hosted_invoice_url},
            )
        ],
    )


async def _count(dbs: Databases, table: Table, *where: ColumnElement[bool]) -> int:
    async with dbs.admin.transaction() as conn:
        query = select(func.count()).select_from(table).where(*where)
        return int((await conn.execute(query)).scalar_one())


async def test_a_retried_record_writes_the_attempt_and_its_notification_once(
    dbs: Databases, stripe_fake: FakeStripeGateway
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    store = DunningStore(dbs.worker)

    first = await store.record_dunning_attempt(_attempt(inv, 2))
    again = await store.record_dunning_attempt(_attempt(inv, 2))

    assert (first.recorded, again.recorded) == (True, False)
    assert await _count(dbs, dunning_attempts, dunning_attempts.c.attempt == 2) == 1
    deliveries = await _count(
        dbs,
        notification_deliveries,
        notification_deliveries.c.message_id == f"invoice.payment_failed:{inv.invoice_id}:2",
    )
    assert deliveries == 1


async def test_a_late_projection_never_overwrites_a_newer_one(
    dbs: Databases, stripe_fake: FakeStripeGateway
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    store = DunningStore(dbs.worker)
    paid = InvoiceProjection(
        tenant_id=str(inv.tenant_id),
        invoice_id=str(inv.invoice_id),
        version=3,
        status="paid",
        attempt_count=3,
        amount_paid=inv.amount_due,
        paid_at=datetime(2026, 11, 28, tzinfo=UTC).isoformat(),
        notifications=[
            DunningNotification("invoice.paid", f"invoice.paid:{inv.invoice_id}", {"n": 1})
        ],
    )
    stale = InvoiceProjection(
        tenant_id=str(inv.tenant_id),
        invoice_id=str(inv.invoice_id),
        version=2,
        status="open",
        attempt_count=2,
        amount_paid=0,
    )

    assert (await store.project_dunning_invoice(paid)).applied
    assert not (await store.project_dunning_invoice(stale)).applied
    assert not (await store.project_dunning_invoice(paid)).applied  # a retry of the same write

    async with dbs.admin.transaction() as conn:
        row = (await conn.execute(select(invoices).where(invoices.c.id == inv.invoice_id))).one()
    assert (row.status, row.attempt_count, row.amount_paid, row.version) == (
        "paid",
        3,
        inv.amount_due,
        3,
    )
    assert await _count(dbs, notification_deliveries) == 1


async def test_a_decline_is_data_and_a_replayed_key_charges_nothing_more(
    dbs: Databases, stripe_fake: FakeStripeGateway
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    stripe = DunningStripeActivities(stripe_fake)
    pay = RetryPaymentInput(inv.stripe_invoice_id, f"pay:{inv.invoice_id}:2")

    declined = await stripe.retry_invoice_payment(pay)
    assert not declined.succeeded
    assert declined.decline_code == "card_declined"
    assert declined.invoice.status == "open"
    assert declined.invoice.hosted_invoice_url == inv.hosted_invoice_url
    # The same key replays the recorded decline, even with a good card attached since.
    good = stripe_fake.register_card()
    await stripe_fake.attach_payment_method(inv.stripe_customer_id, good, idempotency_key="pm:g")
    assert not (await stripe.retry_invoice_payment(pay)).succeeded
    assert stripe_fake.charges_for(inv.stripe_invoice_id) == []


async def test_transient_stripe_errors_are_retryable_application_errors(
    dbs: Databases, stripe_fake: FakeStripeGateway
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    stripe = DunningStripeActivities(stripe_fake)
    stripe_fake.fail_next("retrieve_invoice")
    with pytest.raises(ApplicationError) as raised:
        await stripe.reread_dunning_invoice(RereadInvoiceInput(inv.stripe_invoice_id))
    assert (raised.value.type, raised.value.non_retryable) == ("stripe_transient", False)
    assert (
        await stripe.reread_dunning_invoice(RereadInvoiceInput(inv.stripe_invoice_id))
    ).status == "open"


@pytest.mark.parametrize(
    ("action", "status"), [("mark_uncollectible", "uncollectible"), ("void", "void")]
)
async def test_final_action_closes_the_invoice_idempotently(
    dbs: Databases, stripe_fake: FakeStripeGateway, action: str, status: str
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    stripe = DunningStripeActivities(stripe_fake)
    request = FinalActionInput(str(inv.invoice_id), inv.stripe_invoice_id, action)

    assert (await stripe.close_unrecovered_invoice(request)).invoice.status == status
    assert (await stripe.close_unrecovered_invoice(request)).invoice.status == status
    assert stripe_fake.invoice(inv.stripe_invoice_id).status == status


async def test_final_action_on_an_invoice_paid_meanwhile_reports_it_paid(
    dbs: Databases, stripe_fake: FakeStripeGateway
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    stripe_fake.mark_paid_out_of_band(inv.stripe_invoice_id)
    closed = await DunningStripeActivities(stripe_fake).close_unrecovered_invoice(
        FinalActionInput(str(inv.invoice_id), inv.stripe_invoice_id, "mark_uncollectible")
    )
    assert closed.invoice.status == "paid"
    assert stripe_fake.invoice(inv.stripe_invoice_id).status == "paid"
