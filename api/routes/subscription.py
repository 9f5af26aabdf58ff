"""`/api/billing/subscription`: the tenant's subscription. Reads come from Postgres; commands
write the row first and then start (or message) the subscription workflow."""

from __future__ import annotations

import uuid
from typing import TypeVar

from fastapi import APIRouter, Query, Response, status

from adapters.db import billing_reads
from adapters.db import subscriptions as subscription_repo
from adapters.db.subscriptions import SubscriptionRow
from api.auth import AuthFirstRoute, ManagePrincipal, ReadPrincipal, ServicesDep
from api.commands import COMMAND_ERRORS, line_out, preview_for
from api.errors import NotFound, error_responses
from api.schemas import (
    ChangeOut,
    ChargeCreate,
    ChargeOut,
    DiscountApply,
    LifecycleOut,
    PauseIn,
    PlanChange,
    PlanChangeOut,
    PreviewOut,
    PreviewQuery,
    SubscriptionCreate,
    SubscriptionOut,
)
from services import charges, coupons, subscriptions
from services.commands import apply_before, command, live_subscription
from workflows.subscription import SubscriptionWorkflow
from workflows.subscription_io import (
    CancelRequest,
    ChangePlanRequest,
    LifecycleRequest,
    LifecycleResult,
    PauseRequest,
    PreviewRequest,
)

T = TypeVar("T")
A = TypeVar("A")

router = APIRouter(
    route_class=AuthFirstRoute, prefix="/api/billing/subscription", tags=["subscription"]
)


def _out(row: SubscriptionRow) -> SubscriptionOut:
    return SubscriptionOut.model_validate(row, from_attributes=True)


@router.get("", response_model=SubscriptionOut, responses=error_responses(401, 403, 404))
async def get_subscription(principal: ReadPrincipal, services: ServicesDep) -> SubscriptionOut:
    tenant_id = principal.require_tenant()
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        row = await subscription_repo.latest_subscription(conn, tenant_id)
    if row is None:
        raise NotFound("this tenant has no subscription")
    return _out(row)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionOut,
    responses=error_responses(401, 403, 409, 422, 503),
)
async def create_subscription(
    body: SubscriptionCreate, principal: ManagePrincipal, services: ServicesDep, response: Response
) -> SubscriptionOut:
    row, existed = await subscriptions.create(
        services,
        principal.require_tenant(),
        principal.actor,
        plan_code=body.plan_code,
        interval=body.interval,
        payment_method_id=body.payment_method_id,
        promotion_code=body.promotion_code,
    )
    if existed:
        response.status_code = status.HTTP_200_OK
    return _out(row)


# --- commands on the live subscription (workflow Updates) --------------------------------------


def _iso(value: object) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else None


@router.put("", response_model=PlanChangeOut, responses=COMMAND_ERRORS)
async def change_plan(
    body: PlanChange, principal: ManagePrincipal, services: ServicesDep
) -> PlanChangeOut:
    """Change plan: upgrades apply now with a prorated invoice, downgrades at period end
    (unless `timing` says otherwise)."""
    live = await live_subscription(services, principal.require_tenant())
    plan = await subscriptions.plan_snapshot(services, principal.require_tenant(), body.plan_code)
    result = await command(
        services,
        principal.require_tenant(),
        live.workflow_id,
        SubscriptionWorkflow.change_plan,
        ChangePlanRequest(
            plan,
            principal.actor,
            body.timing,
            _iso(body.proration_date),
            apply_before=apply_before(services),
        ),
    )
    return PlanChangeOut(
        subscription_id=uuid.UUID(result.subscription_id),
        kind=result.kind,
        effective_at=result.effective_at,
        scheduled=result.scheduled,
        lines=line_out(result.lines),
        invoice_id=uuid.UUID(result.invoice_id) if result.invoice_id else None,
        invoice_total=result.invoice_total,
        credit_balance=result.credit_balance,
        status=result.status,
    )


def _lifecycle(result: LifecycleResult) -> LifecycleOut:
    return LifecycleOut.model_validate(result, from_attributes=True)


@router.delete("", response_model=LifecycleOut, responses=COMMAND_ERRORS)
async def cancel_subscription(
    principal: ManagePrincipal,
    services: ServicesDep,
    at_period_end: bool = Query(True, description="false: cancel now with a final invoice"),  # noqa: FBT001
) -> LifecycleOut:
    live = await live_subscription(services, principal.require_tenant())
    request = CancelRequest(principal.actor, at_period_end, apply_before=apply_before(services))
    return _lifecycle(
        await command(
            services,
            principal.require_tenant(),
            live.workflow_id,
            SubscriptionWorkflow.cancel,
            request,
        )
    )


@router.post("/discount", response_model=LifecycleOut, responses=COMMAND_ERRORS)
async def apply_discount(
    body: DiscountApply, principal: ManagePrincipal, services: ServicesDep
) -> LifecycleOut:
    """Redeem a promotion code on the live subscription: its coupon covers the billing periods
    that open from now on. One active discount at a time (409 `invalid_transition`); an
    unknown, expired or used-up code is 409 `coupon_refused` and counts nothing."""
    tenant_id = principal.require_tenant()
    return _lifecycle(
        await coupons.apply(services, tenant_id, body.promotion_code, principal.actor, body.reason)
    )


@router.post("/pause", response_model=LifecycleOut, responses=COMMAND_ERRORS)
async def pause_subscription(
    principal: ManagePrincipal, services: ServicesDep, body: PauseIn | None = None
) -> LifecycleOut:
    live = await live_subscription(services, principal.require_tenant())
    resume_at = _iso(body.resume_at) if body else None
    request = PauseRequest(principal.actor, resume_at, apply_before=apply_before(services))
    return _lifecycle(
        await command(
            services,
            principal.require_tenant(),
            live.workflow_id,
            SubscriptionWorkflow.pause,
            request,
        )
    )


@router.post("/resume", response_model=LifecycleOut, responses=COMMAND_ERRORS)
async def resume_subscription(principal: ManagePrincipal, services: ServicesDep) -> LifecycleOut:
    live = await live_subscription(services, principal.require_tenant())
    request = LifecycleRequest(principal.actor, apply_before=apply_before(services))
    return _lifecycle(
        await command(
            services,
            principal.require_tenant(),
            live.workflow_id,
            SubscriptionWorkflow.resume,
            request,
        )
    )


@router.post(
    "/reactivate",
    response_model=SubscriptionOut,
    responses={
        201: {"model": SubscriptionOut, "description": "a new subscription was started"},
        **error_responses(401, 403, 404, 409, 422, 503),
    },
)
async def reactivate_subscription(
    principal: ManagePrincipal, services: ServicesDep, response: Response
) -> SubscriptionOut:
    """Undo a pending cancellation; after a cancellation took effect, start a NEW subscription
    (new id, new workflow) on the same plan: a workflow id is never reused."""
    row, started = await subscriptions.reactivate(
        services, principal.require_tenant(), principal.actor
    )
    if started:
        response.status_code = status.HTTP_201_CREATED
    return _out(row)


# --- reads ---------------------------------------------------------------------------------------


@router.post("/preview", response_model=PreviewOut, responses=COMMAND_ERRORS)
async def preview_change(
    body: PreviewQuery, principal: ReadPrincipal, services: ServicesDep
) -> PreviewOut:
    plan = await subscriptions.plan_snapshot(services, principal.require_tenant(), body.plan_code)
    request = PreviewRequest(
        plan,
        body.timing,
        _iso(body.proration_date),
        as_of=services.clock().isoformat(),
    )
    return await preview_for(services, principal, request)


@router.get("/history", response_model=list[ChangeOut], responses=error_responses(401, 403, 404))
async def subscription_history(principal: ReadPrincipal, services: ServicesDep) -> list[ChangeOut]:
    tenant_id = principal.require_tenant()
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        latest = await subscription_repo.latest_subscription(conn, tenant_id)
        if latest is None:
            raise NotFound("this tenant has no subscription")
        rows = await billing_reads.list_changes(conn, latest.id)
    return [ChangeOut.model_validate(row) for row in rows]


__all__ = ["router"]


@router.post(
    "/charges",
    status_code=status.HTTP_201_CREATED,
    response_model=ChargeOut,
    responses=COMMAND_ERRORS,
)
async def add_charge(
    body: ChargeCreate, principal: ManagePrincipal, services: ServicesDep
) -> ChargeOut:
    """A one-off charge on the tenant's own subscription (ADR 0022), when the catalog allows it
    (`tenant_charges = true`; 403 `forbidden` otherwise): `invoice: now` issues and collects an
    invoice of its own, `invoice: next` adds a line to the next invoice. The same
    `idempotency_key` again adds nothing (the key is kept as `tenant:{key}`, apart from the
    operators')."""
    key = charges.tenant_key(services, body.idempotency_key)
    result = await charges.add(
        services, principal.require_tenant(), key=key, description=body.description,
        amount=body.amount, invoice_now=body.invoice == "now", actor=principal.actor,
        reason=body.reason,
    )  # fmt: skip
    return ChargeOut.model_validate(result, from_attributes=True)
