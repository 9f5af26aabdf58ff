"""Disputes (ADR 0021), pure: what a Stripe dispute's status means for the invoice it disputes,
and what the configured policy does to the tenant while it is open.

An invoice's `dispute_status` is null (never disputed), `open` (Stripe's `needs_response`,
`under_review` and their `warning_` forms), `won` (`won`, `warning_closed`: the money stays)
or `lost` (`lost`: the money went back to the card holder). The policy is `none` (record and
notify only) or `suspend` (the tenant is suspended while a dispute is open, and given access
back when it closes, won or lost: what happens after a lost dispute is the operator's call)."""

from __future__ import annotations

from typing import Literal

OPEN, WON, LOST = "open", "won", "lost"
DisputePolicy = Literal["none", "suspend"]
POLICIES: tuple[DisputePolicy, ...] = ("none", "suspend")

_WON = frozenset({"won", "warning_closed"})
_LOST = frozenset({"lost"})


def dispute_status(stripe_status: str) -> str:
    """The invoice's dispute status for a Stripe dispute status."""
    if stripe_status in _WON:
        return WON
    if stripe_status in _LOST:
        return LOST
    return OPEN


def suspends(policy: DisputePolicy, status: str) -> bool:
    """Whether the tenant is to be suspended while the invoice's dispute has this status."""
    return policy == "suspend" and status == OPEN
