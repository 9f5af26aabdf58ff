"""What the routes that command or query the live subscription share: the error statuses they
document, the line shape, and the preview (the workflow's `preview` query). Sending the
commands themselves is `services/commands.py`.
"""

from __future__ import annotations

import asyncio

from temporalio.client import (
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError

from api.auth import Principal
from api.errors import ServiceUnavailable, error_responses
from api.schemas import LineOut, PreviewOut
from billing.errors import InvalidTransition
from services.commands import live_subscription
from services.context import Services
from workflows.subscription import SubscriptionWorkflow
from workflows.subscription_io import InvoiceLinePayload, PreviewRequest, PreviewResult

# --- shared by the routes that command or query the live subscription -------------------------

COMMAND_ERRORS = error_responses(401, 403, 404, 409, 422, 503)


def line_out(lines: list[InvoiceLinePayload]) -> list[LineOut]:
    return [LineOut.model_validate(line, from_attributes=True) for line in lines]


async def preview_for(
    services: Services, principal: Principal, request: PreviewRequest
) -> PreviewOut:
    """The workflow's `preview` query: the same pure functions the real change runs."""
    live = await live_subscription(services, principal.require_tenant())
    handle = services.temporal.get_workflow_handle(live.workflow_id)
    try:
        async with asyncio.timeout(services.settings.update_timeout_seconds):
            result: PreviewResult = await handle.query(SubscriptionWorkflow.preview, request)
    except WorkflowQueryFailedError as error:
        raise InvalidTransition(str(error.message)) from error
    except (TimeoutError, RPCError) as error:
        raise ServiceUnavailable(
            "no billing worker answered the preview in time; retry later"
        ) from error
    return PreviewOut(
        kind=result.kind,
        currency=result.currency,
        effective_at=result.effective_at,
        proration_date=result.proration_date,
        lines=line_out(result.lines),
        total=result.total,
        credit_balance_after=result.credit_balance_after,
        next_invoice_at=result.next_invoice_at,
        next_invoice_lines=line_out(result.next_invoice_lines),
        next_invoice_total=result.next_invoice_total,
    )
