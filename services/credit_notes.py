"""Credit notes and refunds (ADR 0020): an operator credits part or all of a paid invoice (the
engine refunds it to the card, or puts it on the credit balance) or of an open invoice (its
amount due goes down); tenants read theirs.

The credit note is issued first, in the tenant's transaction, under the invoice's row lock
(checked against what is left, numbered, audited); then `refund:{credit_note_id}` refunds it
through Stripe with the key `refund:{credit_note_id}`, or `credit-note:{credit_note_id}` lowers
the open invoice with a Stripe credit note keyed the same. The same request again (the same
idempotency key) finds the credit note and starts, or finds, the same workflow: Stripe never
acts twice, and a workflow that Temporal could not start is started by the repeat."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any
from uuid import UUID

from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError

from adapters.db import credit_notes as repo
from adapters.db import tenants as tenant_repo
from adapters.temporal import start_open_invoice_credit, start_refund
from billing.credit_notes import CREDIT_BALANCE, REDUCE_AMOUNT_DUE, CreditRefused
from services.commands import apply_before, command, live_subscription
from services.context import Services
from services.errors import NotFound, ServiceUnavailable
from workflows.open_invoice_credit import open_invoice_credit_workflow_id
from workflows.refund import refund_workflow_id
from workflows.refund_io import OpenInvoiceCreditInput, RefundInput
from workflows.subscription import SubscriptionWorkflow
from workflows.subscription_io import AddCreditRequest

log = logging.getLogger(__name__)

# How long the request waits for the refund before answering with it still pending.
REFUND_WAIT_SECONDS = 10.0


async def issue(
    services: Services,
    tenant_id: UUID,
    invoice_id: UUID,
    *,
    amount: int,
    reason: str,
    idempotency_key: str,
    actor: str,
    method: str | None = None,
) -> dict[str, Any]:
    """Issue (or find) the credit note, then refund it to the card, credit the balance or lower
    the open invoice's amount due (`method` None: as the invoice's status says); the credit
    note as it stands after."""
    request = repo.CreditNoteRequest(
        tenant_id, invoice_id, amount, reason, f"api:{idempotency_key}", actor, method=method
    )
    # The balance is the live subscription's: without one there is nowhere to put it.
    live = await live_subscription(services, tenant_id) if method == CREDIT_BALANCE else None
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        if await tenant_repo.get_tenant(conn, tenant_id) is None:
            raise NotFound(f"no tenant {tenant_id}")
        try:
            issued = await repo.issue(conn, request, services.clock())
        except LookupError as error:
            raise NotFound(f"no invoice {invoice_id} for tenant {tenant_id}") from error
    row = issued.row
    if row["refund_status"] != "pending":
        return row
    if row["method"] == CREDIT_BALANCE:
        live = live or await live_subscription(services, tenant_id)
        await _credit(services, tenant_id, row, live.workflow_id, actor)
    elif issued.stripe_invoice_id is None:  # not billed through Stripe: nothing to act on
        raise CreditRefused("this invoice was not billed through Stripe")
    elif row["method"] == REDUCE_AMOUNT_DUE:
        credit = OpenInvoiceCreditInput(
            str(tenant_id), str(row["id"]), str(invoice_id), issued.stripe_invoice_id,
            int(row["amount"]),
            str(issued.subscription_id) if issued.subscription_id else None,
            stripe_task_queue=services.settings.stripe_task_queue,
        )  # fmt: skip
        await _run(
            services, row, start_open_invoice_credit(
                services.temporal, credit, task_queue=services.settings.task_queue
            ), open_invoice_credit_workflow_id(str(row["id"])),
        )  # fmt: skip
    else:
        refund = RefundInput(
            str(tenant_id), str(row["id"]), issued.stripe_invoice_id, int(row["amount"]),
            stripe_task_queue=services.settings.stripe_task_queue,
        )  # fmt: skip
        await _run(
            services, row, start_refund(
                services.temporal, refund, task_queue=services.settings.task_queue
            ), refund_workflow_id(str(row["id"])),
        )  # fmt: skip
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        return await repo.get(conn, row["id"]) or row


async def _credit(
    services: Services, tenant_id: UUID, row: dict[str, Any], workflow_id: str, actor: str
) -> None:
    """The subscription takes the credit (keyed by the credit note: once), then the credit note
    says so."""
    request = AddCreditRequest(
        key=f"credit-note:{row['id']}",
        amount=int(row["amount"]),
        actor=actor,
        reason=f"credit note {row['number']}",
        apply_before=apply_before(services),
    )
    await command(services, tenant_id, workflow_id, SubscriptionWorkflow.add_credit, request)
    async with services.system_db.tenant_transaction(tenant_id) as conn:
        await repo.record_refund(
            conn, row["id"], stripe_refund_id=None, status="succeeded", at=services.clock(),
            actor=actor,
        )  # fmt: skip


async def _run(
    services: Services, row: dict[str, Any], start: Coroutine[Any, Any, None], workflow_id: str
) -> None:
    """Start the credit note's Stripe workflow and wait up to `REFUND_WAIT_SECONDS` for it."""
    try:
        await start
        handle = services.temporal.get_workflow_handle(workflow_id)
        await asyncio.wait_for(handle.result(), timeout=REFUND_WAIT_SECONDS)
    except TimeoutError:
        return  # still running: the answer says `pending`, the workflow finishes it
    except WorkflowFailureError:
        # The workflow failed (not a refusal: those are recorded as `failed`): the credit
        # note stays `pending`, and the same request again starts a new run of it.
        log.exception("credit note %s: %s failed", row["id"], workflow_id)
        return
    except RPCError as error:
        raise ServiceUnavailable(
            f"credit note {row['number']} is issued; Stripe could not be asked to act on it "
            f"(Temporal: {error.message}): repeat the same request to do so"
        ) from error


async def list_for_tenant(
    services: Services, tenant_id: UUID, invoice_id: UUID | None
) -> list[dict[str, Any]]:
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        return await repo.list_all(conn, invoice_id)


async def get_for_tenant(
    services: Services, tenant_id: UUID, credit_note_id: UUID
) -> dict[str, Any]:
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        row = await repo.get(conn, credit_note_id)
    if row is None:
        raise NotFound("no such credit note")
    return row
