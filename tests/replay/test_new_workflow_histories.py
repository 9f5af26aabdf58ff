"""Committed histories of the workflows added or changed for issues 11, 13 and 14 (the Stripe
sweep, the audit retention purge, a tenant export that ran to expiry, a tenant erasure, the
purge of an erased tenant's books, a credit note's refund, a credit note that lowered an open
invoice, a Stripe event that opened a dispute, a subscription that billed a one-off charge on
its renewal, one signed up with a coupon, one that re-read a webhook's invoice from Stripe
itself, one whose Postgres steps ran as local activities, one whose command carried its API
request's id to the audit row) replay against today's
code: a change that would break running ones fails here (then use `workflow.patched`).
Re-record on purpose only, with `BILLING_RECORD_HISTORIES=1` on the tests that write them
(tests/replay/recording.py)."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from tests.replay.recording import HISTORIES
from workflows.audit_retention import AuditRetentionWorkflow, ErasedBooksPurgeWorkflow
from workflows.erasure import TenantErasureWorkflow
from workflows.export import TenantExportWorkflow
from workflows.open_invoice_credit import OpenInvoiceCreditWorkflow
from workflows.reconcile_stripe import ReconcileStripeWorkflow
from workflows.refund import CreditNoteRefundWorkflow
from workflows.stripe_event import StripeEventWorkflow
from workflows.subscription import SubscriptionWorkflow

NAMES = [
    "reconcile_stripe_applied",
    "audit_retention_purged",
    "tenant_export_expired",
    "tenant_erased",
    "erased_books_purged",
    "credit_note_refunded",
    "credit_note_open_invoice",
    "stripe_event_dispute_opened",
    "subscription_one_off_charge",
    "subscription_with_coupon",
    "subscription_reread_in_subscription",
    "subscription_local_db_steps",
    "subscription_request_id",
]


@pytest.mark.parametrize("name", NAMES)
async def test_history_replays(name: str) -> None:
    history = WorkflowHistory.from_json(name, (HISTORIES / f"{name}.json").read_text())
    replayer = Replayer(
        workflows=[
            ReconcileStripeWorkflow,
            AuditRetentionWorkflow,
            ErasedBooksPurgeWorkflow,
            TenantExportWorkflow,
            TenantErasureWorkflow,
            CreditNoteRefundWorkflow,
            OpenInvoiceCreditWorkflow,
            StripeEventWorkflow,
            SubscriptionWorkflow,
        ]
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
