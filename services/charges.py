"""One-off charges on a tenant's subscription (ADR 0022): added by an operator, or by the
tenant's own `billing.manage` key when the catalog allows it (`tenant_charges`)."""

from __future__ import annotations

from uuid import UUID

from services.commands import apply_before, command, live_subscription
from services.context import Services
from services.errors import Forbidden
from workflows.subscription import SubscriptionWorkflow
from workflows.subscription_io import AddChargeRequest, ChargeResult

# A tenant's keys live apart from the operators': the same key from both is two charges.
TENANT_KEY_PREFIX = "tenant:"


async def add(
    services: Services,
    tenant_id: UUID,
    *,
    key: str,
    description: str,
    amount: int,
    invoice_now: bool,
    actor: str,
    reason: str | None,
) -> ChargeResult:
    """The subscription adds the charge (once per key): an invoice of its own now, or a line
    on its next invoice."""
    live = await live_subscription(services, tenant_id)
    request = AddChargeRequest(
        key=key,
        description=description,
        amount=amount,
        invoice_now=invoice_now,
        actor=actor,
        reason=reason,
        apply_before=apply_before(services),
    )
    return await command(
        services, tenant_id, live.workflow_id, SubscriptionWorkflow.add_charge, request
    )


def tenant_key(services: Services, key: str) -> str:
    """The key a tenant's own charge is added under; `Forbidden` unless the catalog lets
    tenants add charges."""
    if not services.catalog.tenant_charges:
        raise Forbidden(
            "this engine's catalog does not let tenants add charges (tenant_charges = false); "
            "an operator adds them"
        )
    return f"{TENANT_KEY_PREFIX}{key}"
