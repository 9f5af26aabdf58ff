"""Billing period arithmetic: calendar months and years that keep their anchor day.

A subscription anchored on the 31st renews Jan 31 -> Feb 28 (29 in a leap year) -> Mar 31: each
period end is computed from the anchor, never from the previous (possibly clipped) end.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime

from billing.catalog import Interval

MONTHS_PER_INTERVAL = {Interval.MONTH: 1, Interval.YEAR: 12}


def add_months(anchor: datetime, months: int) -> datetime:
    """`anchor` moved by whole calendar months, the day clipped to the target month's length."""
    month_index = anchor.month - 1 + months
    year, month = anchor.year + month_index // 12, month_index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_bounds(anchor: datetime, interval: Interval, index: int) -> tuple[datetime, datetime]:
    """Start and end of period number `index` (0-based) of a subscription anchored at `anchor`."""
    months = MONTHS_PER_INTERVAL[interval]
    return add_months(anchor, months * index), add_months(anchor, months * (index + 1))


def card_expires_at(exp_year: int, exp_month: int) -> datetime:
    """A card is valid through the last day of its expiry month: the first instant after it."""
    return add_months(datetime(exp_year, exp_month, 1, tzinfo=UTC), 1)
