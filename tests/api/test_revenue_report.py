"""The revenue report on a seeded March 2026: an upgrade, a scheduled downgrade that applies at
renewal, a churn, an annual plan that converts from its trial, a trial that has not converted,
and invoices paid, open, paid late, void and written off. Every expected figure is worked out
by hand in the comments, from the catalog's prices (Standard 4,900 a month or 49,000 a year;
Enterprise 49,900 a month)."""

from __future__ import annotations

import io
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest
from sqlalchemy import insert

from adapters.db.plans import latest_plan
from adapters.db.tables import invoice_items, invoices, subscription_changes, subscriptions
from cli.revenue import revenue as revenue_cli
from config import Settings
from tests.factories.tenants import make_tenant, operator_headers
from tests.harness import Databases

URL = "/api/billing/operator/reports/revenue"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class Seed:
    def __init__(self, dbs: Databases) -> None:
        self.dbs = dbs

    async def subscription(
        self, plan: str, interval: str, changes: list[tuple[str, str, str | None, str | None, str]]
    ) -> tuple[UUID, UUID]:
        """`changes`: (kind, to_status, from_plan, to_plan, effective_at); the row ends on the
        last plan in force."""
        tenant = await make_tenant(self.dbs)
        sid = uuid.uuid4()
        async with self.dbs.admin.transaction() as conn:
            row = await latest_plan(conn, plan)
            assert row is not None
            await conn.execute(
                insert(subscriptions).values(
                    id=sid, tenant_id=tenant.id, plan_id=row.id, plan_code=plan,
                    interval=interval, currency="usd", status=changes[-1][1],
                    workflow_id=f"subscription:{sid}",
                )
            )  # fmt: skip
            for n, (kind, status, from_plan, to_plan, when) in enumerate(changes):
                await conn.execute(
                    insert(subscription_changes).values(
                        tenant_id=tenant.id, subscription_id=sid, kind=kind, to_status=status,
                        from_plan_code=from_plan, to_plan_code=to_plan,
                        effective_at=at(when), actor="system", change_key=f"{sid}:{n}",
                    )
                )  # fmt: skip
        return tenant.id, sid

    async def invoice(
        self,
        owner: tuple[UUID, UUID],
        *,
        status: str,
        total: int,
        period: tuple[str, str] | None,
        paid_at: str | None = None,
        lines: list[tuple[str, int]] | None = None,
    ) -> None:
        tenant_id, sid = owner
        iid = uuid.uuid4()
        start, end = (at(period[0]), at(period[1])) if period else (None, None)
        async with self.dbs.admin.transaction() as conn:
            await conn.execute(
                insert(invoices).values(
                    id=iid, tenant_id=tenant_id, subscription_id=sid, status=status,
                    billing_reason="subscription_cycle", billing_key=f"k:{iid}", currency="usd",
                    subtotal=total, total=total, amount_due=total,
                    amount_paid=total if status == "paid" else 0,
                    period_start=start, period_end=end,
                    paid_at=at(paid_at) if paid_at else None,
                )
            )  # fmt: skip
            for position, (kind, amount) in enumerate(lines or [("base", total)]):
                await conn.execute(
                    insert(invoice_items).values(
                        tenant_id=tenant_id, invoice_id=iid, position=position, kind=kind,
                        description=kind, amount=amount, currency="usd",
                        period_start=start, period_end=end,
                    )
                )  # fmt: skip


@pytest.fixture
async def seeded(dbs: Databases) -> None:
    seed = Seed(dbs)
    # A: Standard since January, upgraded to Enterprise on 15 March.
    #    MRR 4,900 -> 49,900: expansion 45,000.
    a = await seed.subscription(
        "enterprise",
        "month",
        [
            ("activated", "active", None, None, "2026-01-10"),
            ("renewed", "active", "standard", "standard", "2026-02-10"),
            ("renewed", "active", "standard", "standard", "2026-03-10"),
            ("plan_changed", "active", "standard", "enterprise", "2026-03-15"),
        ],
    )
    # B: Enterprise since February; a downgrade asked on 5 March applies at the renewal of
    #    20 March. MRR 49,900 -> 4,900: contraction 45,000.
    b = await seed.subscription(
        "standard",
        "month",
        [
            ("activated", "active", None, None, "2026-02-20"),
            ("plan_change_scheduled", "active", "enterprise", "standard", "2026-03-05"),
            ("plan_changed", "active", "enterprise", "standard", "2026-03-20"),
        ],
    )
    # C: Standard since January, canceled on 10 March. MRR 4,900 -> 0: churned 4,900.
    c = await seed.subscription(
        "standard",
        "month",
        [
            ("activated", "active", None, None, "2026-01-05"),
            ("canceled", "canceled", None, None, "2026-03-10"),
        ],
    )
    # D: Standard yearly, trial from 20 February, converted on 6 March.
    #    MRR 0 -> 49,000 / 12 = 4,083.33, half up 4,083: new 4,083.
    d = await seed.subscription(
        "standard",
        "year",
        [
            ("trial_started", "trialing", None, None, "2026-02-20"),
            ("activated", "active", None, None, "2026-03-06"),
        ],
    )
    # E: a trial started on 25 March (no MRR); F: churned in February (no MRR either side).
    trial = [("trial_started", "trialing", None, None, "2026-03-25")]
    await seed.subscription("standard", "month", trial)
    await seed.subscription(
        "standard",
        "month",
        [
            ("activated", "active", None, None, "2026-01-10"),
            ("canceled", "canceled", None, None, "2026-02-10"),
        ],
    )

    # Invoices dated in March (the start of the period they bill):
    #   A's renewal 4,900 paid on the day; A's upgrade 29,000 still open; B's renewal 49,900
    #   paid; D's annual 49,000 paid only on 2 April; a void 1,000; a written-off 700.
    #   Invoiced: 4,900 + 29,000 + 49,900 + 49,000 + 700 = 133,500 (void excluded).
    await seed.invoice(a, status="paid", total=4900, period=("2026-03-10", "2026-04-10"),
                       paid_at="2026-03-10")  # fmt: skip
    upgrade = [("proration_credit", -2450), ("proration_charge", 31450)]
    await seed.invoice(a, status="open", total=29000, period=("2026-03-15", "2026-04-10"),
                       lines=upgrade)  # fmt: skip
    await seed.invoice(b, status="paid", total=49900, period=("2026-03-01", "2026-04-01"),
                       paid_at="2026-03-01")  # fmt: skip
    await seed.invoice(d, status="paid", total=49000, period=("2026-03-06", "2027-03-06"),
                       paid_at="2026-04-02")  # fmt: skip
    await seed.invoice(b, status="void", total=1000, period=("2026-03-03", "2026-04-01"))
    await seed.invoice(c, status="uncollectible", total=700, period=("2026-03-12", "2026-04-10"))
    # Dated in February, paid late on 2 March: collected in March, invoiced in February.
    await seed.invoice(c, status="paid", total=4900, period=("2026-02-05", "2026-03-05"),
                       paid_at="2026-03-02")  # fmt: skip
    # Dated in April: not in March at all.
    await seed.invoice(b, status="open", total=4900, period=("2026-04-01", "2026-05-01"))


MARCH = {
    # Start: A 4,900 + B 49,900 + C 4,900 = 59,700. End: A 49,900 + B 4,900 + D 4,083 = 58,883,
    # which is 59,700 + 4,083 + 45,000 - 45,000 - 4,900.
    "mrr_start": 59_700,
    "mrr": 58_883,
    "arr": 58_883 * 12,
    "new_mrr": 4_083,
    "expansion_mrr": 45_000,
    "contraction_mrr": 45_000,
    "churned_mrr": 4_900,
    "invoiced": 133_500,
    # A's renewal 4,900 + B's renewal 49,900 + C's late February invoice 4,900.
    "collected": 59_700,
    # A's open upgrade 29,000 + D's annual, unpaid until April, 49,000. The written-off 700
    # is not owed any more; the April invoice is not yet dated.
    "outstanding": 78_000,
    # D's 49,000 over 365 days from 6 March: 26 days served by 1 April,
    # 49,000 x 26 // 365 = 3,490; 45,510 still deferred.
    "recognized_revenue": 3_490,
    "deferred_revenue": 45_510,
}


@pytest.mark.usefixtures("seeded")
async def test_the_march_report_matches_the_hand_computed_figures(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    response = await api.get(URL, params={"month": "2026-03"}, headers=await operator_headers(dbs))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["month"] == "2026-03"
    assert body["currencies"] == {"usd": MARCH}
    # In MRR at the month's end: A on Enterprise, B and D on Standard.
    assert body["active_subscriptions"] == {"enterprise": 1, "standard": 2}


@pytest.mark.usefixtures("seeded")
async def test_april_starts_where_march_ended_and_recognises_the_next_days(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    response = await api.get(URL, params={"month": "2026-04"}, headers=await operator_headers(dbs))
    assert response.status_code == 200, response.text
    usd = response.json()["currencies"]["usd"]
    assert usd["mrr_start"] == MARCH["mrr"]
    assert usd["mrr"] == MARCH["mrr"]  # nothing changed in April
    # 56 days served by 1 May: 49,000 x 56 // 365 = 7,517; April's part 7,517 - 3,490.
    assert usd["recognized_revenue"] == 4_027
    assert usd["deferred_revenue"] == 49_000 - 7_517
    # D's annual invoice paid on 2 April; the April invoice (4,900) is open.
    assert usd["collected"] == 49_000
    assert usd["invoiced"] == 4_900
    assert usd["outstanding"] == 29_000 + 4_900


@pytest.mark.usefixtures("seeded")
def test_the_cli_prints_the_same_report(settings: Settings) -> None:
    out = io.StringIO()
    assert revenue_cli(settings, "2026-03", as_json=True, out=out) == 0
    report: dict[str, Any] = json.loads(out.getvalue())
    assert report["currencies"] == {"usd": MARCH}
    table = io.StringIO()
    assert revenue_cli(settings, "2026-03", as_json=False, out=table) == 0
    assert re.search(r"^  mrr +58883$", table.getvalue(), re.M), table.getvalue()
    assert revenue_cli(settings, "2026-13", as_json=True) == 2


async def test_a_month_with_nothing_is_empty_and_bad_months_are_refused(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    headers = await operator_headers(dbs)
    empty = await api.get(URL, params={"month": "2020-01"}, headers=headers)
    assert empty.status_code == 200, empty.text
    assert empty.json() == {"month": "2020-01", "currencies": {}, "active_subscriptions": {}}
    for bad in ("2026-13", "2026-3", "March", "0000-01", "9999-12"):
        refused = await api.get(URL, params={"month": bad}, headers=headers)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["error"]["code"] == "validation_error"


async def test_tenant_keys_cannot_read_the_report(api: httpx.AsyncClient, dbs: Databases) -> None:
    tenant = await make_tenant(dbs)
    response = await api.get(URL, params={"month": "2026-03"}, headers=tenant.headers)
    assert response.status_code == 403
