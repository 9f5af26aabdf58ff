"""Every worker activity that writes for one tenant, run with another tenant's id and the first
tenant's row ids (what a bug or a forged input would send): the first tenant's rows stay
byte-for-byte unchanged. The activities run as the real worker login (BYPASSRLS); their tenant
transactions switch to the scoped role, so row-level security decides, not the query."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from temporalio.exceptions import ApplicationError

from activities.billing_store import BillingStore
from activities.dunning import DunningStore
from activities.stripe_events import StripeEventStore
from activities.subscription_store import SubscriptionStore
from activities.usage_store import UsageStore
from adapters.db.tables import payment_methods
from adapters.stripe_fake import FakeStripeGateway
from tests.factories.invoices import UnpaidInvoice, make_unpaid_invoice
from tests.factories.stripe_events import stripe_event
from tests.factories.tenants import make_tenant
from tests.harness import Databases, tenant_rows
from workflows import dunning_io, shared_io
from workflows.grace_io import GraceEffectInput, GraceProjection, PaymentSettlement
from workflows.shared_io import InvoiceProjection
from workflows.stripe_event_io import ProjectStripeEventInput
from workflows.subscription_io import (
    InvoiceLinePayload,
    PaymentMethodResult,
    RecordInvoiceInput,
    RecordPaymentMethodInput,
    SubscriptionChange,
    SubscriptionProjection,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
A_CARD = "pm_tenant_a_card"


async def _tenant_a(dbs: Databases, stripe: FakeStripeGateway) -> UnpaidInvoice:
    """Tenant A with a subscription, an open invoice, an attempt, a card and a grace window."""
    a = await make_unpaid_invoice(dbs, stripe)
    async with dbs.admin.transaction() as conn:
        await conn.execute(
            payment_methods.insert().values(
                tenant_id=a.tenant_id,
                stripe_payment_method_id=A_CARD,
                brand="visa",
                last4="4242",
                exp_month=12,
                exp_year=2030,
                is_default=True,
            )
        )
        # One open window (this invoice's) and one in force (an older invoice's).
        for subject, resolution in ((str(a.invoice_id), None), ("inv_old", "expired")):
            await conn.execute(
                text(
                    "INSERT INTO grace_periods (tenant_id, kind, subject, workflow_id, "
                    "started_at, expires_at, resolved_at, resolution) "
                    "VALUES (:t, 'payment', :s, :w, :n, :e, :r_at, :r)"
                ),
                {
                    "t": a.tenant_id,
                    "s": subject,
                    "w": f"grace:{a.tenant_id}:payment:{subject}",
                    "n": NOW,
                    "e": NOW + timedelta(days=7),
                    "r_at": NOW if resolution else None,
                    "r": resolution,
                },
            )
        await conn.execute(
            text(
                "UPDATE tenants SET stripe_customer_id = :c, access_status = 'suspended', "
                "suspension_reason = 'payment' WHERE id = :t"
            ),
            {"c": a.stripe_customer_id, "t": a.tenant_id},
        )
    return a


def _calls(
    dbs: Databases, a: UnpaidInvoice, b: str, plan_id: str
) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Each call: tenant B's id, tenant A's row ids."""
    billing = BillingStore(dbs.worker)
    dunning = DunningStore(dbs.worker)
    subs = SubscriptionStore(dbs.worker)
    usage = UsageStore(dbs.worker, gauge_metrics=("storage_gb", "user_seats"))
    grace_id = f"grace:{a.tenant_id}:payment:{a.invoice_id}"
    card = PaymentMethodResult(A_CARD, "visa", "4242", 12, 2030)
    return {
        "record_invoice": lambda: billing.record_invoice(
            RecordInvoiceInput(
                invoice_id=str(a.invoice_id),
                tenant_id=b,
                subscription_id=str(a.subscription_id),
                billing_key=f"sub:{a.subscription_id}:cycle:1",
                billing_reason="subscription_cycle",
                currency="usd",
                subtotal=1,
                total=1,
                lines=[InvoiceLinePayload("base", "forged", 1)],
                period_start=None,
                period_end=None,
                version=99,
            )
        ),
        "project_invoice": lambda: billing.project_invoice(
            InvoiceProjection(
                str(a.invoice_id), version=99, status="paid", amount_paid=1, tenant_id=b
            )
        ),
        "project_invoice(attempt)": lambda: billing.project_invoice(
            InvoiceProjection(
                str(a.invoice_id),
                version=99,
                status="void",
                attempt_count=1,
                attempt_outcome="succeeded",
                attempted_at=NOW.isoformat(),
                tenant_id=b,
            )
        ),
        "record_subscription_change": lambda: billing.record_subscription_change(
            SubscriptionChange(
                tenant_id=b,
                subscription_id=str(a.subscription_id),
                change_key="forged",
                kind="canceled",
                effective_at=NOW.isoformat(),
                actor="forged",
            )
        ),
        "record_payment_method": lambda: billing.record_payment_method(
            RecordPaymentMethodInput(b, card)
        ),
        "project_dunning_invoice": lambda: dunning.project_dunning_invoice(
            shared_io.InvoiceProjection(
                str(a.invoice_id), 99, "paid", amount_paid=2900, attempt_count=9, tenant_id=b
            )
        ),
        "record_dunning_attempt": lambda: dunning.record_dunning_attempt(
            dunning_io.RecordAttemptInput(
                b, str(a.invoice_id), 1, f"pay:{a.invoice_id}:1", NOW.isoformat(), "succeeded"
            )
        ),
        "project_subscription": lambda: subs.project_subscription(
            SubscriptionProjection(
                str(a.subscription_id), b, 99, "canceled", plan_id, "free", "month"
            )
        ),
        "record_grace_period": lambda: usage.record_grace_period(
            GraceProjection(
                grace_id,
                b,
                "payment",
                str(a.invoice_id),
                NOW.isoformat(),
                NOW.isoformat(),
                NOW.isoformat(),
                "waived",
                "forged",
            )  # fmt: skip
        ),
        "apply_grace_expiry": lambda: usage.apply_grace_expiry(
            GraceEffectInput(
                b, "payment", str(a.invoice_id), NOW.isoformat(), "forged", grace_id, "expired"
            )
        ),
        "settle_payment_grace": lambda: usage.settle_payment_grace(
            PaymentSettlement(
                f"grace:{a.tenant_id}:payment:inv_old", b, "inv_old", "paid", "forged", lift=True
            )
        ),
    }


CALLS = [
    "record_invoice",
    "project_invoice",
    "project_invoice(attempt)",
    "record_subscription_change",
    "record_payment_method",
    "project_dunning_invoice",
    "record_dunning_attempt",
    "project_subscription",
    "record_grace_period",
    "apply_grace_expiry",
    "settle_payment_grace",
]


@pytest.mark.parametrize("call", CALLS)
async def test_a_write_for_tenant_b_never_touches_tenant_a(
    call: str, dbs: Databases, stripe_fake: FakeStripeGateway
) -> None:
    a = await _tenant_a(dbs, stripe_fake)
    b = await make_tenant(dbs)
    before = await tenant_rows(dbs, a.tenant_id)
    assert all(before[t] for t in ("payment_methods", "grace_periods", "invoices"))
    try:
        async with dbs.admin.transaction() as conn:
            plan_id = await conn.scalar(
                text("SELECT plan_id FROM subscriptions WHERE id = :s"), {"s": a.subscription_id}
            )
        await _calls(dbs, a, str(b.id), str(plan_id))[call]()
    except (ApplicationError, DBAPIError):
        pass  # refused outright (a key another tenant holds, or RLS's WITH CHECK): also fine
    assert await tenant_rows(dbs, a.tenant_id) == before


async def test_stripe_event_projection_stays_on_the_resolved_tenant(
    dbs: Databases, stripe_fake: FakeStripeGateway
) -> None:
    """A payment_method.updated event resolved to tenant B, naming tenant A's card id, writes B's
    row only (rows are keyed per tenant)."""
    a = await _tenant_a(dbs, stripe_fake)
    b = await make_tenant(dbs)
    event = stripe_event(
        "payment_method.updated",
        {
            "id": A_CARD,
            "object": "payment_method",
            "customer": "cus_other",
            "card": {"brand": "amex", "last4": "0005", "exp_month": 1, "exp_year": 2031},
        },
    )
    async with dbs.admin.transaction() as conn:
        await conn.execute(
            text(
                "INSERT INTO webhook_events (stripe_event_id, type, payload, status) "
                "VALUES (:i, :t, CAST(:p AS jsonb), 'received')"
            ),
            {"i": event["id"], "t": event["type"], "p": json.dumps(event)},
        )
    before = await tenant_rows(dbs, a.tenant_id)
    result = await StripeEventStore(dbs.worker).project_stripe_event(
        ProjectStripeEventInput(event_id=event["id"], tenant_id=str(b.id))
    )
    assert result.applied
    assert await tenant_rows(dbs, a.tenant_id) == before
    assert len((await tenant_rows(dbs, b.id))["payment_methods"]) == 1
