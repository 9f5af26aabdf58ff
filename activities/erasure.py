"""Activities of a tenant's erasure (`tenant_erasure`, ADR 0018). Each is idempotent: run twice,
or after a worker died half way, it leaves the same result."""

from __future__ import annotations

from uuid import UUID

from temporalio import activity
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from activities.errors import domain_errors
from adapters.db import erasure as repo
from adapters.db.audit import record_audit
from adapters.db.session import Database
from billing.payments import StripeGateway
from workflows.erasure_io import (
    CancelForErasure,
    EraseStripeInput,
    ErasureStep,
    ErasureSubjectsOut,
    TenantRef,
    TombstoneInput,
)
from workflows.subscription_io import CancelRequest, LifecycleResult


class ErasureStore:
    def __init__(self, db: Database, client: Client | None) -> None:
        self._db = db
        # The worker's own client: cancelling goes through the subscription's update.
        self._client = client

    @activity.defn(name="erasure_subjects")
    @domain_errors
    async def erasure_subjects(self, input: TenantRef) -> ErasureSubjectsOut:
        async with self._db.tenant_transaction(UUID(input.tenant_id)) as conn:
            found = await repo.subjects(conn, UUID(input.tenant_id))
        if found is None:
            return ErasureSubjectsOut(found=False)
        return ErasureSubjectsOut(
            found=True,
            stripe_customer_id=found.stripe_customer_id,
            payment_method_ids=found.payment_method_ids,
            live_subscription_ids=found.live_subscription_ids,
            terms=[t for t in (found.name, found.email, *found.other_values) if t],
        )

    @activity.defn(name="cancel_for_erasure")
    @domain_errors
    async def cancel_for_erasure(self, input: CancelForErasure) -> ErasureStep:
        """Cancel now through the subscription's own `cancel` update, so the final invoice is
        the one any immediate cancellation issues; a subscription already ended is done."""
        # Activities never import workflow modules: the id and the update by their names
        # (`workflows.subscription.workflow_id`, `SubscriptionWorkflow.cancel`).
        assert self._client is not None, "the worker registers this activity with its client"
        handle = self._client.get_workflow_handle(f"subscription:{input.subscription_id}")
        try:
            await handle.execute_update(
                "cancel",
                CancelRequest(actor=input.actor, at_period_end=False),
                result_type=LifecycleResult,
            )
        except WorkflowUpdateFailedError as error:
            # Refused: it is canceled already (or canceling); nothing left to stop.
            return ErasureStep("cancel", f"{input.subscription_id}: {error.cause}")
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            return ErasureStep("cancel", f"{input.subscription_id}: workflow not running")
        return ErasureStep("cancel", f"{input.subscription_id}: canceled now")

    @activity.defn(name="revoke_tenant_access")
    @domain_errors
    async def revoke_tenant_access(self, input: TenantRef) -> ErasureStep:
        async with self._db.tenant_transaction(UUID(input.tenant_id)) as conn:
            keys, endpoints = await repo.revoke_access(conn, UUID(input.tenant_id))
        return ErasureStep("revoke", f"{keys} keys revoked, {endpoints} endpoints disabled")

    @activity.defn(name="tombstone_tenant")
    @domain_errors
    async def tombstone_tenant(self, input: TombstoneInput) -> ErasureStep:
        """Personal data replaced, books kept, the audit details redacted, and the erasure
        recorded: in one transaction."""
        tenant_id = UUID(input.tenant_id)
        async with self._db.tenant_transaction(tenant_id) as conn:
            await repo.tombstone(conn, tenant_id, input.terms)
        async with self._db.transaction() as conn:  # the redaction function runs as its owner
            redacted = await repo.redact_audit(conn, tenant_id, input.terms, input.actor)
            await record_audit(
                conn,
                actor=input.actor,
                action="tenant.erased",
                subject_type="tenant",
                subject_id=input.tenant_id,
                tenant_id=tenant_id,
                before={"personal_data": "present"},
                after={"personal_data": "tombstoned", "audit_rows_redacted": redacted},
                details={"reason": input.reason},
            )
        return ErasureStep("tombstone", f"{redacted} audit rows redacted")


class ErasureStripe:
    def __init__(self, gateway: StripeGateway) -> None:
        self._gateway = gateway

    @activity.defn(name="erase_stripe_customer")
    @domain_errors
    async def erase_stripe_customer(self, input: EraseStripeInput) -> ErasureStep:
        """Detach the cards, then delete the customer (both idempotent by state)."""
        # Deterministic keys, as for every Stripe write: a retry is the same request.
        for payment_method_id in input.payment_method_ids:
            await self._gateway.detach_payment_method(
                payment_method_id, idempotency_key=f"detach:{payment_method_id}"
            )
        await self._gateway.delete_customer(
            input.customer_id, idempotency_key=f"delete-customer:{input.customer_id}"
        )
        return ErasureStep(
            "stripe", f"{len(input.payment_method_ids)} cards detached, customer deleted"
        )
