"""TenantErasureWorkflow (`erase:{tenant}`, ADR 0018): erase a tenant's personal data and keep
its books. In order: cancel the subscription now (its final invoice as any immediate
cancellation), detach the cards and delete the Stripe customer, revoke the API keys and
disable the notification endpoints, then replace personal data with tombstones, redact it from
the audit details and record the erasure. Every step is idempotent, and the workflow resumes
where it stopped; the id makes a second erase of the same tenant find this one."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    import workflows.activity_refs as refs
    from workflows.activity_refs import call
    from workflows.erasure_io import (
        CancelForErasure,
        EraseStripeInput,
        ErasureInput,
        ErasureResult,
        ErasureStep,
        ErasureSubjectsOut,
        TenantRef,
        TombstoneInput,
    )
    from workflows.retry import db_activity, stripe_read


def erasure_workflow_id(tenant_id: str) -> str:
    return f"erase:{tenant_id}"


@workflow.defn(name="tenant_erasure")
class TenantErasureWorkflow:
    @workflow.init
    def __init__(self, input: ErasureInput) -> None:
        self._steps: list[ErasureStep] = []

    @workflow.query(name="steps")
    def steps(self) -> list[ErasureStep]:
        return list(self._steps)

    def _done(self, step: ErasureStep) -> None:
        self._steps.append(step)
        workflow.set_current_details(f"{step.step}: {step.detail}")

    @workflow.run
    async def run(self, input: ErasureInput) -> ErasureResult:
        actor = f"system:{workflow.info().workflow_id}"
        tenant = TenantRef(input.tenant_id)
        found: ErasureSubjectsOut = await call(
            refs.ERASURE_SUBJECTS, tenant, **db_activity("what to erase")
        )
        if not found.found:
            self._done(ErasureStep("none", "no such tenant"))
            return ErasureResult(input.tenant_id, self._steps)
        for subscription_id in found.live_subscription_ids:
            self._done(
                await call(
                    refs.CANCEL_FOR_ERASURE,
                    CancelForErasure(input.tenant_id, subscription_id, actor),
                    **db_activity(f"cancel subscription {subscription_id} now"),
                )
            )
        # The subscription may have attached a card since: read again before Stripe.
        found = await call(refs.ERASURE_SUBJECTS, tenant, **db_activity("what to erase in Stripe"))
        if found.stripe_customer_id:
            self._done(
                await call(
                    refs.ERASE_STRIPE_CUSTOMER,
                    EraseStripeInput(found.stripe_customer_id, found.payment_method_ids),
                    **stripe_read(
                        input.stripe_task_queue, "detach cards, delete the Stripe customer"
                    ),
                )
            )
        self._done(
            await call(refs.REVOKE_TENANT_ACCESS, tenant, **db_activity("revoke keys, endpoints"))
        )
        self._done(
            await call(
                refs.TOMBSTONE_TENANT,
                TombstoneInput(input.tenant_id, found.terms, actor, input.reason),
                **db_activity("tombstones for personal data"),
            )
        )
        return ErasureResult(input.tenant_id, self._steps)
