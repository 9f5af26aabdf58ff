"""A tenant's billing details (ADR 0015): set by the tenant, audited with before and after,
and printed as the buyer block of its invoice PDFs."""

from __future__ import annotations

import io

import httpx
import pytest
from pypdf import PdfReader
from sqlalchemy import select
from temporalio.testing import WorkflowEnvironment

from adapters.db.tables import audit_log
from services.context import Services
from tests.api.test_billing_api import _active_standard
from tests.harness import Databases

URL = "/api/billing/account/billing-details"
DETAILS = {
    "name": "Acme Holdings GmbH",
    "address": ["Hauptstrasse 1", "10115 Berlin", "Germany"],
    "tax_id": "DE123456789",
    "email": "ap@acme-holdings.com",
}


@pytest.mark.usefixtures("workers")
async def test_billing_details_are_audited_and_printed_on_invoices(
    api: httpx.AsyncClient, dbs: Databases, workflow_env: WorkflowEnvironment, services: Services
) -> None:
    tenant = await _active_standard(api, dbs, workflow_env, services)
    assert (await api.get(URL, headers=tenant.headers)).json() == {
        "name": None, "address": None, "tax_id": None, "email": None,
    }  # fmt: skip
    changed = await api.put(URL, json=DETAILS, headers=tenant.headers)
    assert changed.status_code == 200, changed.text
    assert (await api.get(URL, headers=tenant.headers)).json() == DETAILS
    async with dbs.admin.transaction() as conn:
        rows = (
            await conn.execute(
                select(audit_log.c.actor, audit_log.c.details).where(
                    audit_log.c.action == "tenant.billing_details_set"
                )
            )
        ).all()
    assert [(r.details["before"], r.details["after"]) for r in rows] == [({}, DETAILS)]
    assert rows[0].actor.startswith("api_key:")

    invoice = (await api.get("/api/billing/invoices", headers=tenant.headers)).json()["data"][0]
    pdf = await api.get(f"/api/billing/invoices/{invoice['id']}/pdf", headers=tenant.headers)
    text = "\n".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    for expected in ("Acme Holdings GmbH", "Hauptstrasse 1", "Tax ID: DE123456789", "ap@acme"):
        assert expected in text, (expected, text)


async def test_only_billing_manage_keys_change_them(api: httpx.AsyncClient, dbs: Databases) -> None:
    from adapters.api_keys import Scope
    from tests.factories.tenants import make_tenant

    reader = await make_tenant(dbs, scopes=[Scope.READ])
    refused = await api.put(URL, json=DETAILS, headers=reader.headers)
    assert refused.status_code == 403
    bad = await api.put(URL, json={"tax_id": "x" * 65}, headers=reader.headers)
    assert bad.status_code == 403  # the scope is checked before the body
