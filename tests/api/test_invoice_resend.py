"""Sending an invoice again (`POST /api/billing/invoices/{id}/resend`): one `invoice.sent` per
endpoint, with the number, amounts and PDF path; the same Idempotency-Key sends nothing more;
audited; another tenant's invoice is not found."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from adapters.api_keys import Scope
from adapters.db.tables import audit_log, notification_deliveries
from adapters.stripe_fake import FakeStripeGateway
from tests.factories.invoices import make_unpaid_invoice
from tests.factories.tenants import make_api_key, make_tenant
from tests.harness import Databases


async def test_resend_queues_one_invoice_sent_per_key(
    api: httpx.AsyncClient, dbs: Databases, stripe_fake: FakeStripeGateway
) -> None:
    inv = await make_unpaid_invoice(dbs, stripe_fake)
    headers = {
        "Authorization": f"Bearer {await make_api_key(dbs, inv.tenant_id, [Scope.MANAGE])}",
        "Idempotency-Key": "resend-1",
    }
    url = f"/api/billing/invoices/{inv.invoice_id}/resend"
    first = await api.post(url, headers=headers)
    assert first.status_code == 202, first.text
    assert first.json() == {
        "message_id": f"invoice.sent:{inv.invoice_id}:resend-1", "deliveries": 1,
    }  # fmt: skip
    again = await api.post(url, headers=headers)
    assert again.json()["message_id"] == first.json()["message_id"]
    other = await api.post(url, headers={**headers, "Idempotency-Key": "resend-2"})
    assert other.status_code == 202

    async with dbs.admin.transaction() as conn:
        rows = (
            await conn.execute(
                select(notification_deliveries.c.message_id, notification_deliveries.c.payload)
                .where(notification_deliveries.c.event_type == "invoice.sent")
                .order_by(notification_deliveries.c.message_id)
            )
        ).all()
        audited = (
            (
                await conn.execute(
                    select(audit_log.c.subject_id).where(audit_log.c.action == "invoice.resent")
                )
            )
            .scalars()
            .all()
        )
    assert [r.message_id.rsplit(":", 1)[1] for r in rows] == ["resend-1", "resend-2"]
    payload = rows[0].payload
    assert payload["invoice_id"] == str(inv.invoice_id)
    assert payload["amount_due"] == inv.amount_due
    assert payload["pdf"] == f"/api/billing/invoices/{inv.invoice_id}/pdf"
    assert audited == [str(inv.invoice_id), str(inv.invoice_id)]

    stranger = await make_tenant(dbs)
    assert (await api.post(url, headers=stranger.headers)).status_code == 404
