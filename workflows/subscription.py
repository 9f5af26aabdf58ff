"""SubscriptionWorkflow (`subscription:{id}`): one subscription's whole life.

Walking skeleton: ensure the Stripe customer, record it, activate (trial or first period),
project the state to Postgres, keep the search attributes current, and wait for the period end.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    from billing.catalog import Interval
    from billing.periods import period_bounds
    from workflows import search_attributes as sa
    from workflows.io import (
        EnsureCustomerInput,
        EnsureCustomerResult,
        ProjectionResult,
        RecordCustomerInput,
        RecordCustomerResult,
        SubscriptionInput,
        SubscriptionProjection,
        SubscriptionResult,
        SubscriptionState,
    )
    from workflows.retry import DB_RETRY, STRIPE_RETRY

ACTIVITY_TIMEOUT = timedelta(seconds=30)


def workflow_id(subscription_id: str) -> str:
    return f"subscription:{subscription_id}"


@workflow.defn(name="subscription")
class SubscriptionWorkflow:
    def __init__(self) -> None:
        self._input: SubscriptionInput | None = None
        self._status = "incomplete"
        self._version = 0
        self._customer_id: str | None = None
        self._period: tuple[datetime, datetime] | None = None
        self._trial_end: datetime | None = None

    @workflow.run
    async def run(self, input: SubscriptionInput) -> SubscriptionResult:
        self._input = input
        customer: EnsureCustomerResult = await workflow.execute_activity(
            "ensure_stripe_customer",
            EnsureCustomerInput(input.tenant_id, input.tenant_name, input.tenant_email),
            result_type=EnsureCustomerResult,
            task_queue=input.stripe_task_queue,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=STRIPE_RETRY,
            summary="ensure Stripe customer",
        )
        self._customer_id = customer.customer_id
        await workflow.execute_activity(
            "record_stripe_customer",
            RecordCustomerInput(input.tenant_id, customer.customer_id),
            result_type=RecordCustomerResult,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DB_RETRY,
            summary="record Stripe customer",
        )

        now = workflow.now()
        trial_days = int(input.plan.definition.get("trial_days", 0))
        if trial_days > 0:
            self._status = "trialing"
            self._trial_end = now + timedelta(days=trial_days)
            deadline = self._trial_end
        else:
            self._status = "active"
            self._period = period_bounds(now, Interval(input.interval), 0)
            deadline = self._period[1]
        await self._project()
        self._publish()

        # The billing clock: a durable timer to the next boundary (scaled for demos).
        remaining = (deadline - now) / input.time_scale
        await workflow.sleep(remaining, summary="trial ends" if self._trial_end else "renewal")
        return SubscriptionResult(input.subscription_id, self._status)

    @workflow.query(name="state")
    def state(self) -> SubscriptionState:
        assert self._input is not None
        return SubscriptionState(
            subscription_id=self._input.subscription_id,
            tenant_id=self._input.tenant_id,
            status=self._status,
            plan_code=self._input.plan.code,
            interval=self._input.interval,
            stripe_customer_id=self._customer_id,
            current_period_start=self._period[0].isoformat() if self._period else None,
            current_period_end=self._period[1].isoformat() if self._period else None,
            trial_end=self._trial_end.isoformat() if self._trial_end else None,
            version=self._version,
        )

    async def _project(self) -> None:
        assert self._input is not None
        self._version += 1
        await workflow.execute_activity(
            "project_subscription",
            SubscriptionProjection(
                subscription_id=self._input.subscription_id,
                tenant_id=self._input.tenant_id,
                version=self._version,
                status=self._status,
                plan_id=self._input.plan.plan_id,
                plan_code=self._input.plan.code,
                interval=self._input.interval,
                current_period_start=self._period[0].isoformat() if self._period else None,
                current_period_end=self._period[1].isoformat() if self._period else None,
                trial_end=self._trial_end.isoformat() if self._trial_end else None,
            ),
            result_type=ProjectionResult,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=DB_RETRY,
            summary=f"project status {self._status}",
        )

    def _publish(self) -> None:
        assert self._input is not None
        next_at = self._trial_end or (self._period[1] if self._period else None)
        updates: list[SearchAttributeUpdate[Any]] = [
            sa.TENANT_ID.value_set(self._input.tenant_id),
            sa.SUBSCRIPTION_ID.value_set(self._input.subscription_id),
            sa.PLAN_CODE.value_set(self._input.plan.code),
            sa.SUBSCRIPTION_STATUS.value_set(self._status),
        ]
        if next_at is not None:
            updates.append(sa.NEXT_BILLING_AT.value_set(next_at))
        workflow.upsert_search_attributes(updates)
        workflow.set_current_details(
            f"{self._status} on {self._input.plan.code}/{self._input.interval}"
            + (f", next boundary {next_at.isoformat()}" if next_at else "")
        )
