"""The rules of a plan change and of the next invoice (billing/plan_changes.py), table-driven:
every (change kind, timing) pair, every status, and the amounts a change bills now, to the
cent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from billing.catalog import Catalog, Interval
from billing.plan_changes import (
    ChangeKind,
    PricedChange,
    applies_now,
    change_kind,
    next_invoice,
    price_change,
)

APRIL = (datetime(2027, 4, 1, tzinfo=UTC), datetime(2027, 5, 1, tzinfo=UTC))
MID_APRIL = datetime(2027, 4, 16, tzinfo=UTC)


@pytest.mark.parametrize(
    ("current", "new", "kind"),
    [
        ("free", "standard", ChangeKind.UPGRADE),
        ("standard", "enterprise", ChangeKind.UPGRADE),
        ("enterprise", "standard", ChangeKind.DOWNGRADE),
        ("standard", "free", ChangeKind.DOWNGRADE),
        ("standard", "standard", ChangeKind.LATERAL),
    ],
)
def test_the_kind_follows_the_price(catalog: Catalog, current: str, new: str, kind: str) -> None:
    assert change_kind(catalog.plan(current), catalog.plan(new), Interval.MONTH) == kind


@pytest.mark.parametrize(
    ("timing", "kind", "now"),
    [
        ("default", ChangeKind.UPGRADE, True),
        ("default", ChangeKind.DOWNGRADE, False),
        ("default", ChangeKind.LATERAL, False),
        ("immediate", ChangeKind.UPGRADE, True),
        ("immediate", ChangeKind.DOWNGRADE, True),
        ("immediate", ChangeKind.LATERAL, True),
        ("period_end", ChangeKind.UPGRADE, False),
        ("period_end", ChangeKind.DOWNGRADE, False),
        ("period_end", ChangeKind.LATERAL, False),
    ],
)
def test_when_a_change_applies(timing: str, kind: ChangeKind, now: bool) -> None:
    assert applies_now(timing, kind) is now


def _priced(
    catalog: Catalog, current: str, new: str, *, timing: str, status: str = "active"
) -> PricedChange:
    return price_change(
        status=status,
        current=catalog.plan(current),
        new=catalog.plan(new),
        interval=Interval.MONTH,
        timing=timing,
        at=MID_APRIL,
        period=APRIL,
        credit_balance=0,
    )


def test_an_upgrade_mid_period_bills_the_prorated_difference(catalog: Catalog) -> None:
    priced = _priced(catalog, "standard", "enterprise", timing="default")
    assert (priced.kind, priced.immediate, priced.effective_at) == ("upgrade", True, MID_APRIL)
    assert priced.invoice is not None
    # Half of April: credit 2450 of Standard's 4900, charge 24950 of Enterprise's 49900.
    assert [line.amount for line in priced.invoice.lines] == [-2450, 24950]
    assert priced.invoice.total == 22500
    assert priced.invoice.total == sum(line.amount for line in priced.invoice.lines)


def test_an_immediate_downgrade_leaves_credit_and_bills_nothing(catalog: Catalog) -> None:
    priced = _priced(catalog, "enterprise", "standard", timing="immediate")
    assert priced.invoice is not None
    assert priced.invoice.total == 0
    assert priced.invoice.credit_balance_after == 22500


@pytest.mark.parametrize("status", ["active", "past_due"])
def test_a_scheduled_change_takes_effect_at_period_end(catalog: Catalog, status: str) -> None:
    priced = _priced(catalog, "enterprise", "standard", timing="default", status=status)
    assert (priced.immediate, priced.effective_at, priced.invoice) == (False, APRIL[1], None)


def test_a_change_during_the_trial_bills_nothing_now(catalog: Catalog) -> None:
    priced = _priced(catalog, "standard", "enterprise", timing="default", status="trialing")
    assert (priced.immediate, priced.invoice) == (True, None)


@pytest.mark.parametrize(
    ("status", "cancel_at_period_end", "bills_at"),
    [
        ("trialing", False, datetime(2027, 4, 15, tzinfo=UTC)),
        ("active", False, APRIL[1]),
        ("past_due", False, APRIL[1]),
        ("active", True, None),
        ("paused", False, None),
        ("canceled", False, None),
        ("incomplete", False, None),
    ],
)
def test_the_next_invoice_by_status(
    catalog: Catalog, status: str, cancel_at_period_end: bool, bills_at: datetime | None
) -> None:
    at, draft = next_invoice(
        status=status,
        plan=catalog.plan("standard"),
        interval=Interval.MONTH,
        trial_end=datetime(2027, 4, 15, tzinfo=UTC),
        anchor=APRIL[0] if status != "trialing" else None,
        period_index=0,
        cancel_at_period_end=cancel_at_period_end,
        credit_balance=1000,
    )
    assert at == bills_at
    if bills_at is None:
        assert draft is None
    else:
        assert draft is not None
        assert draft.subtotal == 4900
        assert draft.total == 3900  # the credit is applied
