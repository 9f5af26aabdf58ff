"""Subscription use cases: start one (the row first, then its workflow) and reactivate one.

A command on the live subscription is an Update of its workflow (`services/commands.py`); these
two are what happens around a workflow's whole life: the first, and the one after a
cancellation took effect (a new subscription with a new id: a workflow id is never reused).
"""

from __future__ import annotations

import uuid
from uuid import UUID

from temporalio.service import RPCError

from adapters.db import coupons as coupons_repo
from adapters.db import errors as db_errors
from adapters.db import payment_methods as payment_methods_repo
from adapters.db import plans as plan_repo
from adapters.db import subscriptions as subscription_repo
from adapters.db import tenants as tenant_repo
from adapters.db.audit import record_audit
from adapters.db.subscriptions import SubscriptionRow
from adapters.temporal import start_subscription
from billing.coupons import discount_of
from billing.errors import InvalidTransition, UnknownPlan
from services.commands import apply_before, command
from services.context import Services
from services.errors import Conflict, NotFound, ServiceUnavailable
from workflows.subscription import SubscriptionWorkflow, workflow_id
from workflows.subscription.carry import discount_out
from workflows.subscription_io import LifecycleRequest, PlanSnapshot, SubscriptionInput


async def create(
    services: Services,
    tenant_id: UUID,
    actor: str,
    *,
    plan_code: str,
    interval: str,
    payment_method_id: str | None = None,
    reactivated_from: UUID | None = None,
    promotion_code: str | None = None,
) -> tuple[SubscriptionRow, bool]:
    """The tenant's subscription, and whether it existed already (a repeated request whose
    workflow start failed, or is still in flight, finishes the job instead of answering 409)."""
    try:
        async with services.tenant_db.tenant_transaction(tenant_id) as conn:
            tenant = await tenant_repo.get_tenant(conn, tenant_id)
            if tenant is None:  # the key outlived its tenant
                raise NotFound("tenant not found")
            live = await subscription_repo.get_live_subscription(conn, tenant_id)
            if live is not None and not _is_retry_of(live, plan_code, interval):
                raise Conflict(
                    f"this tenant already has a {live.status} subscription ({live.id}); "
                    "change it with PUT or cancel it first"
                )
            # A card added before subscribing: the subscription starts with it, on the same
            # Stripe customer.
            card_on_file = await payment_methods_repo.default_card(conn)
            plan = await plan_repo.get_plan_version(conn, live.plan_id) if live else None
            if plan is None:
                plan = await plan_repo.latest_plan(conn, plan_code)
            if plan is None:
                raise UnknownPlan(plan_code)
            subscription_id = live.id if live else uuid.uuid4()
            discount = None
            if live is not None and live.coupon_code:
                # A repeated request: the same discount, no second redemption.
                coupon = await coupons_repo.coupon_by_code(conn, live.coupon_code)
                discount = discount_of(coupon, plan.plan().currency) if coupon else None
            elif live is None and promotion_code:
                # Counted in this transaction: a refused sign-up counts nothing.
                coupon = await coupons_repo.redeem(conn, promotion_code, services.clock())
                discount = discount_of(coupon, plan.plan().currency)
            if live is None:
                await subscription_repo.insert_subscription(
                    conn,
                    subscription_id=subscription_id,
                    tenant_id=tenant_id,
                    plan_id=plan.id,
                    plan_code=plan.code,
                    interval=interval,
                    currency=plan.plan().currency,
                    workflow_id=workflow_id(str(subscription_id)),
                    coupon_code=discount.code if discount else None,
                )
                if reactivated_from is not None:
                    await subscription_repo.set_reactivated_from(
                        conn, subscription_id, reactivated_from
                    )
                await record_audit(
                    conn,
                    actor=actor,
                    action="subscription.created",
                    subject_type="subscription",
                    subject_id=str(subscription_id),
                    tenant_id=tenant_id,
                    before=None,
                    after={
                        "status": "incomplete",
                        "plan": plan.code,
                        "version": plan.version,
                        "interval": interval,
                        "reactivated_from": str(reactivated_from) if reactivated_from else None,
                        "coupon": discount.code if discount else None,
                        "promotion_code": promotion_code,
                    },
                )
    except db_errors.UniqueViolation as error:  # a concurrent request created one first
        raise Conflict("this tenant already has a subscription") from error

    # After the commit: the workflow id is the subscription id, so a retry after a failure here
    # starts the same workflow (USE_EXISTING) instead of a second one.
    settings = services.settings
    snapshot = SubscriptionInput(
        subscription_id=str(subscription_id),
        tenant_id=str(tenant_id),
        tenant_name=tenant.name,
        tenant_email=tenant.email,
        plan=PlanSnapshot(str(plan.id), plan.code, plan.version, plan.definition),
        interval=interval,
        stripe_task_queue=settings.stripe_task_queue,
        actor=actor,
        time_scale=settings.time_scale,
        payment_method_id=payment_method_id
        or (card_on_file["stripe_payment_method_id"] if card_on_file else None),
        stripe_customer_id=tenant.stripe_customer_id,
        dunning_policy=settings.dunning_policy().to_dict(),
        payment_grace_days=settings.payment_grace_days,
        discount=discount_out(discount),
    )
    try:
        await start_subscription(services.temporal, snapshot, task_queue=settings.task_queue)
    except RPCError as error:
        raise ServiceUnavailable(
            "the subscription is recorded but its workflow could not be started "
            f"(Temporal: {error.message}); repeat the same request to finish"
        ) from error
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        row = await subscription_repo.get_subscription(conn, subscription_id)
    assert row is not None
    services.quota_cache.invalidate(tenant_id)
    return row, live is not None


def _is_retry_of(live: SubscriptionRow, plan_code: str, interval: str) -> bool:
    """An `incomplete` subscription with the same plan is a request whose workflow start failed
    (or is still in flight): repeating it finishes the job instead of answering 409."""
    return live.status == "incomplete" and live.plan_code == plan_code and live.interval == interval


async def reactivate(
    services: Services, tenant_id: UUID, actor: str
) -> tuple[SubscriptionRow, bool]:
    """Undo a pending cancellation; after a cancellation took effect, start a NEW subscription
    (new id, new workflow) on the same plan. Returns the subscription and whether it is new."""
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        latest = await subscription_repo.latest_subscription(conn, tenant_id)
    if latest is None:
        raise NotFound("this tenant has no subscription to reactivate")
    if latest.status != "canceled":
        if not latest.cancel_at_period_end:
            raise InvalidTransition(f"the subscription is {latest.status}, not canceled")
        request = LifecycleRequest(actor, apply_before=apply_before(services))
        await command(
            services, tenant_id, latest.workflow_id, SubscriptionWorkflow.undo_cancel, request
        )
        async with services.tenant_db.tenant_transaction(tenant_id) as conn:
            row = await subscription_repo.get_subscription(conn, latest.id)
        assert row is not None
        return row, False
    row, _ = await create(
        services,
        tenant_id,
        actor,
        plan_code=latest.plan_code,
        interval=latest.interval,
        reactivated_from=latest.id,
    )
    return row, True


async def plan_snapshot(services: Services, tenant_id: UUID, code: str) -> PlanSnapshot:
    """The latest version of plan `code`, as a subscription workflow takes it."""
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        plan = await plan_repo.latest_plan(conn, code)
    if plan is None:
        raise UnknownPlan(code)
    return PlanSnapshot(str(plan.id), plan.code, plan.version, plan.definition)
