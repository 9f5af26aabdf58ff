"""`/api/billing/subscription`: the tenant's subscription. Reads come from Postgres; commands
write the row first and then start (or message) the subscription workflow."""

from __future__ import annotations

import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

from fastapi import APIRouter, Query, Response, status
from temporalio.service import RPCError
from temporalio.workflow import UpdateMethodMultiParam

from adapters.db import billing_reads
from adapters.db import errors as db_errors
from adapters.db import payment_methods as payment_methods_repo
from adapters.db import plans as plan_repo
from adapters.db import subscriptions as subscription_repo
from adapters.db import tenants as tenant_repo
from adapters.db.audit import record_audit
from adapters.db.subscriptions import SubscriptionRow
from adapters.temporal import start_subscription
from api.auth import AuthFirstRoute, ManagePrincipal, Principal, ReadPrincipal, ServicesDep
from api.commands import (
    COMMAND_ERRORS,
    StillRunning,
    apply_before,
    line_out,
    live_subscription,
    preview_for,
    run_update,
)
from api.errors import Conflict, NotFound, ServiceUnavailable, error_responses
from api.schemas import (
    ChangeOut,
    LifecycleOut,
    PauseIn,
    PlanChange,
    PlanChangeOut,
    PreviewOut,
    PreviewQuery,
    SubscriptionCreate,
    SubscriptionOut,
)
from api.services import Services
from billing.errors import InvalidTransition, UnknownPlan
from workflows.subscription import SubscriptionWorkflow, workflow_id
from workflows.subscription_io import (
    CancelRequest,
    ChangePlanRequest,
    LifecycleRequest,
    LifecycleResult,
    PauseRequest,
    PlanSnapshot,
    PreviewRequest,
    SubscriptionInput,
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
    row, existed = await _create(body, principal, services)
    services.quota_cache.invalidate(principal.require_tenant())
    if existed:
        response.status_code = status.HTTP_200_OK
    return _out(row)


async def _create(
    body: SubscriptionCreate,
    principal: Principal,
    services: Services,
    reactivated_from: uuid.UUID | None = None,
) -> tuple[SubscriptionRow, bool]:
    tenant_id = principal.require_tenant()
    try:
        async with services.tenant_db.tenant_transaction(tenant_id) as conn:
            tenant = await tenant_repo.get_tenant(conn, tenant_id)
            if tenant is None:  # the key outlived its tenant
                raise NotFound("tenant not found")
            live = await subscription_repo.get_live_subscription(conn, tenant_id)
            if live is not None and not _is_retry_of(live, body):
                raise Conflict(
                    f"this tenant already has a {live.status} subscription ({live.id}); "
                    "change it with PUT or cancel it first"
                )
            # A card added before subscribing: the subscription starts with it, on the same
            # Stripe customer.
            card_on_file = await payment_methods_repo.default_card(conn)
            plan = await plan_repo.get_plan_version(conn, live.plan_id) if live else None
            if plan is None:
                plan = await plan_repo.latest_plan(conn, body.plan_code)
            if plan is None:
                raise UnknownPlan(body.plan_code)
            subscription_id = live.id if live else uuid.uuid4()
            if live is None:
                await subscription_repo.insert_subscription(
                    conn,
                    subscription_id=subscription_id,
                    tenant_id=tenant_id,
                    plan_id=plan.id,
                    plan_code=plan.code,
                    interval=body.interval,
                    currency=plan.plan().currency,
                    workflow_id=workflow_id(str(subscription_id)),
                )
                if reactivated_from is not None:
                    await subscription_repo.set_reactivated_from(
                        conn, subscription_id, reactivated_from
                    )
                await record_audit(
                    conn,
                    actor=principal.actor,
                    action="subscription.created",
                    subject_type="subscription",
                    subject_id=str(subscription_id),
                    tenant_id=tenant_id,
                    details={
                        "plan": plan.code,
                        "version": plan.version,
                        "interval": body.interval,
                        "reactivated_from": str(reactivated_from) if reactivated_from else None,
                    },
                )
    except db_errors.UniqueViolation as error:  # a concurrent request created one first
        raise Conflict("this tenant already has a subscription") from error

    # After the commit: the workflow id is the subscription id, so a retry after a failure here
    # starts the same workflow (USE_EXISTING) instead of a second one.
    snapshot = SubscriptionInput(
        subscription_id=str(subscription_id),
        tenant_id=str(tenant_id),
        tenant_name=tenant.name,
        tenant_email=tenant.email,
        plan=PlanSnapshot(str(plan.id), plan.code, plan.version, plan.definition),
        interval=body.interval,
        stripe_task_queue=services.settings.stripe_task_queue,
        actor=principal.actor,
        time_scale=services.settings.time_scale,
        payment_method_id=body.payment_method_id
        or (card_on_file["stripe_payment_method_id"] if card_on_file else None),
        stripe_customer_id=tenant.stripe_customer_id,
        dunning_policy=services.settings.dunning_policy().to_dict(),
        payment_grace_days=services.settings.payment_grace_days,
    )
    try:
        await start_subscription(
            services.temporal, snapshot, task_queue=services.settings.task_queue
        )
    except RPCError as error:
        raise ServiceUnavailable(
            "the subscription is recorded but its workflow could not be started "
            f"(Temporal: {error.message}); repeat the same request to finish"
        ) from error
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        row = await subscription_repo.get_subscription(conn, subscription_id)
    assert row is not None
    return row, live is not None


def _is_retry_of(live: SubscriptionRow, body: SubscriptionCreate) -> bool:
    """An `incomplete` subscription with the same plan is a request whose workflow start failed
    (or is still in flight): repeating it finishes the job instead of answering 409."""
    return (
        live.status == "incomplete"
        and live.plan_code == body.plan_code
        and live.interval == body.interval
    )


# --- commands on the live subscription (workflow Updates) --------------------------------------


async def _plan_snapshot(services: Services, principal: Principal, code: str) -> PlanSnapshot:
    async with services.tenant_db.tenant_transaction(principal.require_tenant()) as conn:
        plan = await plan_repo.latest_plan(conn, code)
    if plan is None:
        raise UnknownPlan(code)
    return PlanSnapshot(str(plan.id), plan.code, plan.version, plan.definition)


def _iso(value: object) -> str | None:
    return value.isoformat() if hasattr(value, "isoformat") else None


@router.put("", response_model=PlanChangeOut, responses=COMMAND_ERRORS)
async def change_plan(
    body: PlanChange, principal: ManagePrincipal, services: ServicesDep
) -> PlanChangeOut:
    """Change plan: upgrades apply now with a prorated invoice, downgrades at period end
    (unless `timing` says otherwise)."""
    live = await live_subscription(services, principal)
    plan = await _plan_snapshot(services, principal, body.plan_code)
    result = await _update(
        services,
        principal,
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


async def _update(
    services: Services,
    principal: Principal,
    workflow_id: str,
    update: UpdateMethodMultiParam[[Any, A], Coroutine[Any, Any, T]],
    arg: A,
) -> T:
    """`run_update`, then forget the tenant's cached quota rows: a plan change, pause or cancel
    changes its quotas, and this process's next check must not wait for the notification."""
    try:
        return await run_update(services, workflow_id, update, arg)
    finally:
        services.quota_cache.invalidate(principal.require_tenant())


def _lifecycle(result: LifecycleResult) -> LifecycleOut:
    return LifecycleOut.model_validate(result, from_attributes=True)


@router.delete("", response_model=LifecycleOut, responses=COMMAND_ERRORS)
async def cancel_subscription(
    principal: ManagePrincipal,
    services: ServicesDep,
    at_period_end: bool = Query(True, description="false: cancel now with a final invoice"),  # noqa: FBT001
) -> LifecycleOut:
    live = await live_subscription(services, principal)
    request = CancelRequest(principal.actor, at_period_end, apply_before=apply_before(services))
    return _lifecycle(
        await _update(services, principal, live.workflow_id, SubscriptionWorkflow.cancel, request)
    )


@router.post("/pause", response_model=LifecycleOut, responses=COMMAND_ERRORS)
async def pause_subscription(
    principal: ManagePrincipal, services: ServicesDep, body: PauseIn | None = None
) -> LifecycleOut:
    live = await live_subscription(services, principal)
    resume_at = _iso(body.resume_at) if body else None
    request = PauseRequest(principal.actor, resume_at, apply_before=apply_before(services))
    return _lifecycle(
        await _update(services, principal, live.workflow_id, SubscriptionWorkflow.pause, request)
    )


@router.post("/resume", response_model=LifecycleOut, responses=COMMAND_ERRORS)
async def resume_subscription(principal: ManagePrincipal, services: ServicesDep) -> LifecycleOut:
    live = await live_subscription(services, principal)
    request = LifecycleRequest(principal.actor, apply_before=apply_before(services))
    return _lifecycle(
        await _update(services, principal, live.workflow_id, SubscriptionWorkflow.resume, request)
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
    tenant_id = principal.require_tenant()
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        latest = await subscription_repo.latest_subscription(conn, tenant_id)
    if latest is None:
        raise NotFound("this tenant has no subscription to reactivate")
    if latest.status != "canceled":
        if not latest.cancel_at_period_end:
            raise InvalidTransition(f"the subscription is {latest.status}, not canceled")
        request = LifecycleRequest(principal.actor, apply_before=apply_before(services))
        await _update(
            services, principal, latest.workflow_id, SubscriptionWorkflow.undo_cancel, request
        )
        async with services.tenant_db.tenant_transaction(tenant_id) as conn:
            row = await subscription_repo.get_subscription(conn, latest.id)
        assert row is not None
        return _out(row)
    body = SubscriptionCreate(plan_code=latest.plan_code, interval=latest.interval)
    row, _ = await _create(body, principal, services, reactivated_from=latest.id)
    services.quota_cache.invalidate(tenant_id)
    response.status_code = status.HTTP_201_CREATED
    return _out(row)


# --- reads ---------------------------------------------------------------------------------------


@router.post("/preview", response_model=PreviewOut, responses=COMMAND_ERRORS)
async def preview_change(
    body: PreviewQuery, principal: ReadPrincipal, services: ServicesDep
) -> PreviewOut:
    plan = await _plan_snapshot(services, principal, body.plan_code)
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


__all__ = ["StillRunning", "router"]
