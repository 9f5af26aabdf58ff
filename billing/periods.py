"""Billing period arithmetic: calendar months and years that keep their anchor day.

A subscription anchored on the 31st renews Jan 31 -> Feb 28 (29 in a leap year) -> Mar 31: each
period end is computed from the anchor, never from the previous (possibly clipped) end.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

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


# --- The business clock ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BusinessClock:
    """A subscription's billing calendar against the wall: `business = business_origin + (wall -
    wall_origin) * time_scale`. Production runs at 1.0 (business time is wall time, offset only
    when a subscription was migrated with its own start); `billing dev --time-scale N` runs it
    N times faster. The subscription workflow and the usage path use this one function, so an
    event stamped with the caller's wall clock lands in the period the workflow has open."""

    wall_origin: datetime
    business_origin: datetime
    time_scale: float = 1.0

    @property
    def is_wall(self) -> bool:
        """Business time is wall time (production, unless a migrated subscription kept its
        own start): no event needs mapping."""
        return self.time_scale == 1.0 and self.wall_origin == self.business_origin

    def business_at(self, wall: datetime) -> datetime:
        elapsed = wall - self.wall_origin
        if self.time_scale == 1.0:
            return self.business_origin + elapsed
        # Whole microseconds, so the same history always gives the same business instant.
        return self.business_origin + timedelta(
            microseconds=round(elapsed / timedelta(microseconds=1) * self.time_scale)
        )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WALL_CLOCK = BusinessClock(_EPOCH, _EPOCH, 1.0)


def business_clock(
    wall_origin: datetime | None, business_origin: datetime | None, time_scale: float | None
) -> BusinessClock:
    """The clock a subscription row projects; none projected (older rows): the wall clock."""
    if wall_origin is None or business_origin is None:
        return WALL_CLOCK
    return BusinessClock(wall_origin, business_origin, time_scale or 1.0)
