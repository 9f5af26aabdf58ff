"""Credit notes and refunds (ADR 0020) on the real stack: an operator refunds half a paid
invoice (one Stripe refund with the key `refund:{credit_note_id}`, even when the Stripe call is
retried and the request repeated); more than is left is refused; a refund made in the Stripe
dashboard becomes a credit note exactly once and counts against what is left; the engine's
own refund, seen again in `charge.refunded`, does not become a second one."""

from __future__ import annotations

import asyncio
import io
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pypdf import PdfReader
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from adapters.db.tables import audit_log, credit_notes
from adapters.stripe_fake import FakeStripeGateway
from billing.payments import StripeRefund
from services.context import Services
from tests.api.test_billing_api import _active_standard, _until, pay_with_new_card
from tests.api.test_charges import declined_charge
from tests.factories.stripe_events import accept_test_webhooks, stripe_event
from tests.factories.tenants import TenantWithKey, operator_headers
from tests.harness import Databases
from tests.replay.recording import record
from tests.webhooks.test_stripe_webhooks import post_event, processed


async def _paid_invoice(api: httpx.AsyncClient, tenant: TenantWithKey) -> dict[str, Any]:
    invoices = (await api.get("/api/billing/invoices", headers=tenant.headers)).json()["data"]
    paid = [i for i in invoices if i["status"] == "paid"]
    assert len(paid) == 1, invoices
    return dict(paid[0])


def _url(tenant: TenantWithKey, invoice_id: str) -> str:
    return f"/api/billing/operator/tenants/{tenant.id}/invoices/{invoice_id}/credit-notes"


@pytest.mark.usefixtures("workers")
async def test_refunds_never_exceed_what_was_paid_and_each_is_made_once(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
) -> None:
    tenant = await _active_standard(api, dbs, workflow_env, services)
    invoice = await _paid_invoice(api, tenant)
    assert invoice["amount_paid"] == 4900
    op = await operator_headers(dbs)
    url = _url(tenant, invoice["id"])

    # Half the invoice; Stripe fails once on the way, and the activity retries with the key.
    stripe_fake.fail_next("refund_invoice_payment")
    half = {"amount": 2450, "reason": "half the month unused", "idempotency_key": "cn-1"}
    first = await api.post(url, json=half, headers=op)
    assert first.status_code == 201, first.text
    note = first.json()
    assert (note["amount"], note["refund_status"], note["source"]) == (
        2450,
        "succeeded",
        "operator",
    )
    assert note["number"].startswith("CN-")
    assert note["number"].endswith("-000001")
    key = f"refund:{note['id']}"
    await record(workflow_env.client.get_workflow_handle(key), "credit_note_refunded")
    assert stripe_fake.keys_for("refund_invoice_payment") == [key, key]
    assert [(r.id, r.amount) for r in stripe_fake.refunds] == [(note["stripe_refund_id"], 2450)]

    # The same request again: the same credit note, no second refund.
    again = await api.post(url, json=half, headers=op)
    assert again.status_code == 201, again.text
    assert again.json()["id"] == note["id"]
    assert len(stripe_fake.refunds) == 1
    # The same key for another amount is refused, as is more than is left.
    reused = await api.post(url, json={**half, "amount": 100}, headers=op)
    assert reused.status_code == 409
    over = await api.post(
        url, json={"amount": 2451, "reason": "too much", "idempotency_key": "cn-2"}, headers=op
    )
    assert over.status_code == 409, over.text
    assert over.json()["error"]["code"] == "credit_refused"
    assert len(stripe_fake.refunds) == 1

    # A refund made in the Stripe dashboard (1,000), and the engine's own, in charge.refunded.
    accept_test_webhooks(services)
    account = (await api.get("/api/billing/account", headers=tenant.headers)).json()
    stripe_invoice_id = await _stripe_invoice_id(dbs, invoice["id"])
    charge = {
        "id": "ch_refunded_1", "object": "charge", "customer": account["stripe_customer_id"],
        "invoice": stripe_invoice_id, "amount": 4900, "amount_refunded": 3450,
        "refunds": {"object": "list", "data": [
            {"id": note["stripe_refund_id"], "amount": 2450, "status": "succeeded",
             "metadata": {"credit_note_id": note["id"]}},
            {"id": "re_dashboard_1", "amount": 1000, "status": "succeeded", "metadata": {}},
        ]},
    }  # fmt: skip
    for event in (stripe_event("charge.refunded", charge), stripe_event("charge.refunded", charge)):
        assert (await post_event(api, event)).status_code == 200
        assert (await processed(workflow_env.client, event["id"])).status == "processed"
    listed = (await api.get("/api/billing/credit-notes", headers=tenant.headers)).json()["data"]
    assert sorted((n["source"], n["amount"], n["refund_status"]) for n in listed) == [
        ("operator", 2450, "succeeded"),
        ("stripe", 1000, "succeeded"),
    ]
    dashboard = next(n for n in listed if n["source"] == "stripe")
    assert dashboard["stripe_refund_id"] == "re_dashboard_1"
    assert dashboard["number"].endswith("-000002")

    # What is left counts the dashboard refund: 4,900 - 2,450 - 1,000 = 1,450.
    too_much = await api.post(
        url, json={"amount": 1451, "reason": "rest", "idempotency_key": "cn-3"}, headers=op
    )
    assert too_much.status_code == 409, too_much.text
    rest = await api.post(
        url, json={"amount": 1450, "reason": "rest", "idempotency_key": "cn-4"}, headers=op
    )
    assert rest.status_code == 201, rest.text
    assert sum(r.amount for r in stripe_fake.refunds) == 2450 + 1450
    one = await api.get(f"/api/billing/credit-notes/{rest.json()['id']}", headers=tenant.headers)
    assert one.status_code == 200
    assert one.json()["refund_status"] == "succeeded"
    pdf = await api.get(f"/api/billing/credit-notes/{note['id']}/pdf", headers=tenant.headers)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert f"Credit note {note['number']}" in text
    assert f"credits invoice {invoice['number']}" in text
    assert "half the month unused" in text
    assert "$24.50" in text
    again_pdf = await api.get(f"/api/billing/credit-notes/{note['id']}/pdf", headers=tenant.headers)
    assert again_pdf.content == pdf.content  # deterministic

    async with dbs.admin.transaction() as conn:
        total = sum(
            r[0]
            for r in await conn.execute(
                select(credit_notes.c.amount).where(credit_notes.c.tenant_id == tenant.id)
            )
        )
        audited = [
            (r.action, r.actor.split(":")[0])
            for r in await conn.execute(
                select(audit_log.c.action, audit_log.c.actor)
                .where(
                    audit_log.c.tenant_id == tenant.id,
                    audit_log.c.action.like("credit_note.%"),
                )
                .order_by(audit_log.c.id)
            )
        ]
    assert total == invoice["amount_paid"]  # never more than was paid
    assert audited == [
        ("credit_note.issued", "api_key"),
        ("credit_note.refund_succeeded", "system"),
        ("credit_note.issued", "stripe"),
        ("credit_note.issued", "api_key"),
        ("credit_note.refund_succeeded", "system"),
    ]


@pytest.mark.usefixtures("workers")
async def test_concurrent_credit_notes_cannot_together_exceed_what_was_paid(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
) -> None:
    """Three operators credit 2,000 each of a 4,900 invoice at once: the invoice's row lock
    lets two through and refuses the third."""
    tenant = await _active_standard(api, dbs, workflow_env, services)
    invoice = await _paid_invoice(api, tenant)
    op = await operator_headers(dbs)
    answers = await asyncio.gather(
        *(
            api.post(
                _url(tenant, invoice["id"]),
                json={"amount": 2000, "reason": "race", "idempotency_key": f"race-{n}"},
                headers=op,
            )
            for n in range(3)
        )
    )
    assert sorted(a.status_code for a in answers) == [201, 201, 409]
    assert sum(r.amount for r in stripe_fake.refunds) == 4000
    numbers = sorted(a.json()["number"] for a in answers if a.status_code == 201)
    assert [n[-6:] for n in numbers] == ["000001", "000002"]  # gapless: the refusal took none


@pytest.mark.usefixtures("workers")
async def test_a_credit_to_the_balance_is_used_by_the_next_invoice_once(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
) -> None:
    tenant = await _active_standard(api, dbs, workflow_env, services)
    invoice = await _paid_invoice(api, tenant)
    op = await operator_headers(dbs)
    body = {"amount": 1000, "reason": "outage credit", "idempotency_key": "credit-1",
            "method": "credit_balance"}  # fmt: skip
    for _ in range(2):  # the same request twice: one credit
        answer = await api.post(_url(tenant, invoice["id"]), json=body, headers=op)
        assert answer.status_code == 201, answer.text
        note = answer.json()
        assert (note["method"], note["refund_status"], note["stripe_refund_id"]) == (
            "credit_balance", "succeeded", None,
        )  # fmt: skip
    assert stripe_fake.refunds == []
    upcoming = (await api.get("/api/billing/invoices/upcoming", headers=tenant.headers)).json()
    assert upcoming["next_invoice_total"] == 4900 - 1000
    await workflow_env.sleep(timedelta(days=31))
    invoices = await _until(
        api, tenant, lambda b: len(b["data"]) == 2 and b["data"][0]["status"] == "paid",
        "/api/billing/invoices",
    )  # fmt: skip
    assert invoices["data"][0]["total"] == 3900
    history = (await api.get("/api/billing/subscription/history", headers=tenant.headers)).json()
    assert [h["kind"] for h in history].count("credit_added") == 1


@pytest.mark.usefixtures("workers")
async def test_a_refund_stripe_refuses_leaves_a_failed_credit_note_that_does_not_count(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
) -> None:
    """Stripe already refunded 4,000 of the 4,900 in its dashboard, and the engine has not seen
    the event yet: a credit note of 2,000 is refused by Stripe for good. It stays, `failed`, and
    does not count against what is left; 900 then goes through."""
    tenant = await _active_standard(api, dbs, workflow_env, services)
    invoice = await _paid_invoice(api, tenant)
    stripe_invoice_id = await _stripe_invoice_id(dbs, invoice["id"])
    stripe_fake.refunds.append(
        StripeRefund("re_dashboard_x", 4000, "succeeded", {"invoice": stripe_invoice_id})
    )
    op = await operator_headers(dbs)
    refused = await api.post(
        _url(tenant, invoice["id"]),
        json={"amount": 2000, "reason": "partial", "idempotency_key": "f-1"},
        headers=op,
    )
    assert refused.status_code == 201, refused.text
    assert (refused.json()["refund_status"], refused.json()["stripe_refund_id"]) == ("failed", None)
    rest = await api.post(
        _url(tenant, invoice["id"]),
        json={"amount": 900, "reason": "what Stripe still holds", "idempotency_key": "f-2"},
        headers=op,
    )
    assert rest.status_code == 201, rest.text
    assert rest.json()["refund_status"] == "succeeded"
    async with dbs.admin.transaction() as conn:
        audited = [
            r[0]
            for r in await conn.execute(
                select(audit_log.c.action)
                .where(audit_log.c.tenant_id == tenant.id, audit_log.c.action.like("credit_note.%"))
                .order_by(audit_log.c.id)
            )
        ]
    assert audited == [
        "credit_note.issued",
        "credit_note.refund_failed",
        "credit_note.issued",
        "credit_note.refund_succeeded",
    ]


@pytest.mark.usefixtures("workers")
async def test_only_paid_invoices_of_the_tenant_are_credited(
    api: httpx.AsyncClient, dbs: Databases, workflow_env: WorkflowEnvironment, services: Services
) -> None:
    tenant = await _active_standard(api, dbs, workflow_env, services)
    op = await operator_headers(dbs)
    body = {"amount": 1, "reason": "x", "idempotency_key": "k"}
    unknown = await api.post(
        _url(tenant, "00000000-0000-0000-0000-000000000000"), json=body, headers=op
    )
    assert unknown.status_code == 404
    invoice = await _paid_invoice(api, tenant)
    as_tenant = await api.post(_url(tenant, invoice["id"]), json=body, headers=tenant.headers)
    assert as_tenant.status_code == 403
    for bad in ({**body, "amount": 0}, {**body, "amount": 1.5}, {**body, "reason": ""}):
        response = await api.post(_url(tenant, invoice["id"]), json=bad, headers=op)
        assert response.status_code == 422, bad
    missing = await api.get(
        "/api/billing/credit-notes/00000000-0000-0000-0000-000000000000", headers=tenant.headers
    )
    assert missing.status_code == 404


async def _stripe_invoice_id(dbs: Databases, invoice_id: str) -> str:
    from adapters.db.tables import invoices

    async with dbs.admin.transaction() as conn:
        found = await conn.scalar(
            select(invoices.c.stripe_invoice_id).where(invoices.c.id == invoice_id)
        )
    assert isinstance(found, str)
    return found


async def _invoice(api: httpx.AsyncClient, tenant: TenantWithKey, invoice_id: str) -> Any:
    return (await api.get(f"/api/billing/invoices/{invoice_id}", headers=tenant.headers)).json()


@pytest.mark.usefixtures("workers")
async def test_a_credit_note_lowers_an_open_invoice_and_the_next_payment_collects_the_rest(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
) -> None:
    tenant, op, invoice_id = await declined_charge(api, dbs, workflow_env, services, stripe_fake)
    url = _url(tenant, invoice_id)
    body = {"amount": 10000, "reason": "migration took half the time", "idempotency_key": "o-1"}

    stripe_fake.fail_next("credit_open_invoice")  # the activity retries with the same key
    first = await api.post(url, json=body, headers=op)
    assert first.status_code == 201, first.text
    note = first.json()
    assert (note["method"], note["amount"], note["refund_status"]) == (
        "reduce_amount_due",
        10000,
        "succeeded",
    )
    assert note["stripe_credit_note_id"].startswith("cn_")
    assert note["stripe_refund_id"] is None
    key = f"credit-note:{note['id']}"
    await record(workflow_env.client.get_workflow_handle(key), "credit_note_open_invoice")
    assert stripe_fake.keys_for("credit_open_invoice") == [key, key]
    assert [(n.id, n.amount) for n in stripe_fake.credit_notes] == [
        (note["stripe_credit_note_id"], 10000)
    ]
    stripe_invoice_id = await _stripe_invoice_id(dbs, invoice_id)
    assert stripe_fake.invoice(stripe_invoice_id).amount_due == 15000
    lowered = await _invoice(api, tenant, invoice_id)
    assert (lowered["status"], lowered["amount_due"]) == ("open", 15000)
    # The invoice lists its credit notes.
    assert [(n["number"], n["amount"], n["method"]) for n in lowered["credit_notes"]] == [
        (note["number"], 10000, "reduce_amount_due")
    ]

    # The same request again: the same credit note; a refund of an open invoice, or more than
    # is still due, is refused.
    again = await api.post(url, json=body, headers=op)
    assert (again.status_code, again.json()["id"]) == (201, note["id"])
    assert len(stripe_fake.credit_notes) == 1
    refund = await api.post(
        url, json={**body, "idempotency_key": "o-2", "method": "refund"}, headers=op
    )
    assert refund.status_code == 409, refund.text
    assert "only a paid invoice" in refund.json()["error"]["message"]
    over = await api.post(url, json={**body, "amount": 15001, "idempotency_key": "o-3"}, headers=op)
    assert over.status_code == 409, over.text
    assert over.json()["error"]["code"] == "credit_refused"

    # A new card: dunning's retry collects what is left, 15,000.
    await pay_with_new_card(api, services, workflow_env, tenant, invoice_id)
    paid = await _invoice(api, tenant, invoice_id)
    assert (paid["amount_due"], paid["amount_paid"]) == (15000, 15000)
    assert stripe_fake.charges[-1].amount == 15000
    # Lowering what was due gave nothing back: all 15,000 paid may still be refunded.
    too_much = {"amount": 15001, "reason": "x", "idempotency_key": "o-4", "method": "refund"}
    assert (await api.post(url, json=too_much, headers=op)).status_code == 409

    async with dbs.admin.transaction() as conn:
        rows = await conn.execute(
            select(audit_log.c.action, audit_log.c.details)
            .where(
                audit_log.c.action.in_(
                    ["credit_note.reduce_succeeded", "invoice.amount_due_lowered"]
                )
            )
            .order_by(audit_log.c.id)
        )
        actions = [(r.action, r.details["before"], r.details["after"]) for r in rows]
    assert [(a, b) for a, b, _ in actions] == [
        ("credit_note.reduce_succeeded", {"refund_status": "pending"}),
        ("invoice.amount_due_lowered", {"amount_due": 25000}),
    ]
    assert actions[1][2] == {"amount_due": 15000}


@pytest.mark.usefixtures("workers")
async def test_an_open_invoice_credited_in_full_is_settled_and_its_dunning_stops(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
) -> None:
    tenant, op, invoice_id = await declined_charge(api, dbs, workflow_env, services, stripe_fake)
    charges_before = len(stripe_fake.charges)
    body = {"amount": 25000, "reason": "waived: our outage", "idempotency_key": "waive-1"}
    answer = await api.post(_url(tenant, invoice_id), json=body, headers=op)
    assert answer.status_code == 201, answer.text
    assert answer.json()["refund_status"] == "succeeded"
    await _until(
        api, tenant,
        lambda b: any(i["id"] == invoice_id and i["status"] == "paid" for i in b["data"]),
        "/api/billing/invoices",
    )  # fmt: skip
    await _until(api, tenant, lambda b: b["status"] == "active")
    settled = await _invoice(api, tenant, invoice_id)
    assert (settled["amount_due"], settled["amount_paid"]) == (0, 0)
    assert len(stripe_fake.charges) == charges_before  # nothing was charged for it
    nothing_left = await api.post(
        _url(tenant, invoice_id), json={**body, "amount": 1, "idempotency_key": "waive-2"},
        headers=op,
    )  # fmt: skip
    assert nothing_left.status_code == 409


@pytest.mark.usefixtures("workers")
async def test_a_credit_note_made_in_the_stripe_dashboard_lowers_an_open_invoice_once(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    services: Services,
    stripe_fake: FakeStripeGateway,
) -> None:
    """`credit_note.created` for a credit note made in the Stripe dashboard on an open invoice
    becomes the engine's credit note (`source: stripe`) and lowers the amount due, once, even
    when Stripe sends it again under another event id; the engine's own credit notes, and one
    on a paid invoice (its refund is `charge.refunded`'s business), add nothing."""
    tenant, _, invoice_id = await declined_charge(api, dbs, workflow_env, services, stripe_fake)
    accept_test_webhooks(services)
    stripe_invoice_id = await _stripe_invoice_id(dbs, invoice_id)

    def note(note_id: str, amount: int, **fields: Any) -> dict[str, Any]:
        return {"id": note_id, "object": "credit_note", "invoice": stripe_invoice_id,
                "type": "pre_payment", "status": "issued", "amount": amount, "metadata": {},
                **fields}  # fmt: skip

    events = [
        stripe_event("credit_note.created", note("cn_dash_1", 4000)),
        stripe_event("credit_note.created", note("cn_dash_1", 4000)),  # re-sent, new event id
        stripe_event(
            "credit_note.created",
            note("cn_engine_1", 3000, metadata={"credit_note_id": "an-engine-credit-note"}),
        ),
        stripe_event("credit_note.created", note("cn_after_1", 2000, type="post_payment")),
    ]
    for event in events:
        assert (await post_event(api, event)).status_code == 200
        assert (await processed(workflow_env.client, event["id"])).status == "processed"

    lowered = await _invoice(api, tenant, invoice_id)
    assert (lowered["status"], lowered["amount_due"]) == ("open", 25000 - 4000)
    listed = (await api.get("/api/billing/credit-notes", headers=tenant.headers)).json()["data"]
    assert [
        (n["source"], n["method"], n["amount"], n["refund_status"], n["stripe_credit_note_id"])
        for n in listed
    ] == [("stripe", "reduce_amount_due", 4000, "succeeded", "cn_dash_1")]
    async with dbs.admin.transaction() as conn:
        rows = (
            await conn.execute(
                select(audit_log.c.actor, audit_log.c.details).where(
                    audit_log.c.tenant_id == tenant.id,
                    audit_log.c.action == "invoice.amount_due_lowered",
                )
            )
        ).all()
    assert [(r.details["before"], r.details["after"]) for r in rows] == [
        ({"amount_due": 25000}, {"amount_due": 21000})
    ]
    assert rows[0].actor == f"stripe:{events[0]['id']}"
