"""`/api/billing/invoices`: the tenant's invoices from Postgres (RLS-scoped), and the upcoming
invoice from the subscription workflow's `preview` (the code that will bill it)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from uuid import UUID

from fastapi import APIRouter, Header, Query, Response, status

from adapters.db import billing_reads
from adapters.db import credit_notes as credit_notes_repo
from api.auth import AuthFirstRoute, ManagePrincipal, ReadPrincipal, ServicesDep
from api.commands import preview_for
from api.errors import NotFound, ServiceError, error_responses
from api.schemas import (
    CreditNoteOut,
    InvoiceDetailOut,
    InvoiceItemOut,
    InvoiceOut,
    InvoicePage,
    InvoiceResent,
    PreviewOut,
)
from services import documents
from services import invoices as invoice_service
from workflows.subscription_io import PreviewRequest

router = APIRouter(route_class=AuthFirstRoute, prefix="/api/billing/invoices", tags=["invoices"])


class BadCursor(ServiceError):
    status_code = 422
    code = "invalid_cursor"


def _cursor(row: dict[str, object]) -> str:
    created_at = row["created_at"]
    assert isinstance(created_at, datetime)
    raw = f"{created_at.isoformat()}|{row['id']}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _parse_cursor(cursor: str) -> tuple[datetime, UUID]:
    try:
        created_at, invoice_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created_at), UUID(invoice_id)
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise BadCursor("cursor is not one this API returned") from error


@router.get("", response_model=InvoicePage, responses=error_responses(401, 403, 422))
async def list_invoices(
    principal: ReadPrincipal,
    services: ServicesDep,
    limit: int = Query(20, ge=1, le=100),
    cursor: str | None = Query(None, max_length=200),
) -> InvoicePage:
    after = _parse_cursor(cursor) if cursor else None
    async with services.tenant_db.tenant_transaction(principal.require_tenant()) as conn:
        rows = await billing_reads.list_invoices(conn, limit=limit + 1, after=after)
    page = rows[:limit]
    return InvoicePage(
        data=[InvoiceOut.model_validate(r) for r in page],
        next_cursor=_cursor(page[-1]) if len(rows) > limit else None,
    )


@router.get("/upcoming", response_model=PreviewOut, responses=error_responses(401, 403, 404, 503))
async def upcoming_invoice(principal: ReadPrincipal, services: ServicesDep) -> PreviewOut:
    """The next renewal invoice as things stand (usage overage is only known at period close)."""
    request = PreviewRequest(as_of=services.clock().isoformat())
    return await preview_for(services, principal, request)


async def _invoice(
    services: ServicesDep, principal: ReadPrincipal, invoice_id: UUID
) -> dict[str, object]:
    async with services.tenant_db.tenant_transaction(principal.require_tenant()) as conn:
        row = await billing_reads.get_invoice(conn, invoice_id)
        if row is None:
            raise NotFound("no such invoice")
        row["items"] = [
            InvoiceItemOut.model_validate(i)
            for i in await billing_reads.invoice_lines(conn, invoice_id)
        ]
        row["credit_notes"] = [
            CreditNoteOut.model_validate(n)
            for n in await credit_notes_repo.list_all(conn, invoice_id)
        ]
    return row


@router.get(
    "/{invoice_id}", response_model=InvoiceDetailOut, responses=error_responses(401, 403, 404, 422)
)
async def get_invoice(
    invoice_id: UUID, principal: ReadPrincipal, services: ServicesDep
) -> InvoiceDetailOut:
    return InvoiceDetailOut.model_validate(await _invoice(services, principal, invoice_id))


@router.get(
    "/{invoice_id}/pdf",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "the invoice as a PDF"},
        **error_responses(401, 403, 404, 422),
    },
)
async def invoice_pdf(
    invoice_id: UUID, principal: ReadPrincipal, services: ServicesDep
) -> Response:
    """The engine's own PDF of the invoice, with its number, lines and totals (ADR 0015); the
    same bytes every time for the same invoice. Stripe's hosted page, when there is one, is in
    the `Link` header (and in the invoice's `hosted_invoice_url`)."""
    rendered = await documents.invoice_pdf(services, principal.require_tenant(), invoice_id)
    headers = {"Content-Disposition": f'inline; filename="{rendered.filename}"'}
    if rendered.hosted_invoice_url:
        headers["Link"] = f'<{rendered.hosted_invoice_url}>; rel="alternate"; type="text/html"'
    return Response(rendered.pdf, media_type="application/pdf", headers=headers)


@router.post(
    "/{invoice_id}/resend",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=InvoiceResent,
    responses=error_responses(401, 403, 404, 422, 503),
)
async def resend_invoice(
    invoice_id: UUID,
    principal: ManagePrincipal,
    services: ServicesDep,
    idempotency_key: str | None = Header(
        None, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$",
        description="the same key again sends nothing more",
    ),
) -> InvoiceResent:  # fmt: skip
    """Send the invoice again to the tenant's notification endpoints (`invoice.sent`, with its
    number, amounts and the path of its PDF)."""
    resent = await invoice_service.resend(
        services, principal.require_tenant(), invoice_id, idempotency_key, principal.actor
    )
    return InvoiceResent(message_id=resent.message_id, deliveries=len(resent.deliveries))
