"""Invoice use cases beyond reading: sending one again (`invoice.sent`)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from uuid import UUID

from adapters.db import billing_reads
from adapters.db import notification_deliveries as deliveries
from adapters.db.audit import record_audit
from adapters.db.notifications import enqueue_notification
from adapters.dispatch import DispatchConfig, Dispatcher
from billing.notifications import INVOICE_SENT
from services.context import Services
from services.errors import NotFound

log = logging.getLogger("billing.invoices")


@dataclass(frozen=True)
class Resent:
    message_id: str
    deliveries: list[str]


async def resend(
    services: Services, tenant_id: UUID, invoice_id: UUID, key: str | None, actor: str
) -> Resent:
    """Queue `invoice.sent` for each of the tenant's endpoints, in one transaction with the
    audit row; the same `key` again queues nothing more. Deliveries start at once when
    Temporal answers, else the worker's re-dispatcher starts them."""
    message_id = f"{INVOICE_SENT}:{invoice_id}:{key or uuid.uuid4().hex}"
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        row = await billing_reads.get_invoice(conn, invoice_id)
        if row is None:
            raise NotFound("no such invoice")
        payload = {
            "invoice_id": str(invoice_id),
            "number": row["number"],
            "status": row["status"],
            "total": row["total"],
            "amount_due": row["amount_due"],
            "amount_paid": row["amount_paid"],
            "currency": row["currency"],
            "hosted_invoice_url": row["hosted_invoice_url"],
            "pdf": f"/api/billing/invoices/{invoice_id}/pdf",
        }
        new = await enqueue_notification(
            conn, tenant_id=tenant_id, event_type=INVOICE_SENT, message_id=message_id,
            payload=payload,
        )  # fmt: skip
        ids = await deliveries.pending_ids_for_message(conn, tenant_id, message_id)
        if new:
            await record_audit(
                conn, actor=actor, action="invoice.resent", subject_type="invoice",
                subject_id=str(invoice_id), tenant_id=tenant_id,
                before=None, after={"message_id": message_id, "deliveries": len(new)},
            )  # fmt: skip
    dispatcher = Dispatcher(
        services.system_db, services.temporal, DispatchConfig.from_settings(services.settings)
    )
    for delivery_id in ids:
        try:
            await dispatcher.start_notification(str(delivery_id))
        except Exception as error:  # queued: the re-dispatcher starts it later
            log.warning("invoice.sent delivery %s not started: %r", delivery_id, error)
    return Resent(message_id, [str(i) for i in ids])
