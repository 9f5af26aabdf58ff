"""`/api/billing/subscription`: the tenant's subscription. Reads come from Postgres; commands
write the row first and then start (or message) the subscription workflow."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status
from sqlalchemy.exc import IntegrityError
from temporalio.service import RPCError

from adapters.db import plans as plan_repo
from adapters.db import subscriptions as subscription_repo
from adapters.db import tenants as tenant_repo
from adapters.db.audit import record_audit
from adapters.db.subscriptions import SubscriptionRow
from adapters.temporal import start_subscription
from api.auth import ManagePrincipal, ReadPrincipal, ServicesDep
from api.errors import Conflict, NotFound, ServiceUnavailable, error_responses
from api.schemas import SubscriptionCreate, SubscriptionOut
from billing.errors import UnknownPlan
from workflows.io import PlanSnapshot, SubscriptionInput
from workflows.subscription import workflow_id

router = APIRouter(prefix="/api/billing/subscription", tags=["subscription"])


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
                await record_audit(
                    conn,
                    actor=principal.actor,
                    action="subscription.created",
                    subject_type="subscription",
                    subject_id=str(subscription_id),
                    tenant_id=tenant_id,
                    details={"plan": plan.code, "version": plan.version, "interval": body.interval},
                )
    except IntegrityError as error:  # a concurrent request created one first
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
        payment_method_id=body.payment_method_id,
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
    if live is not None:
        response.status_code = status.HTTP_200_OK
    return _out(row)


def _is_retry_of(live: SubscriptionRow, body: SubscriptionCreate) -> bool:
    """An `incomplete` subscription with the same plan is a request whose workflow start failed
    (or is still in flight): repeating it finishes the job instead of answering 409."""
    return (
        live.status == "incomplete"
        and live.plan_code == body.plan_code
        and live.interval == body.interval
    )
