"""Credit notes and refunds (ADR 0020), pure: what may still be credited on an invoice, and the
number series. Amounts are integer minor units; nothing here rounds.

A credit note credits part or all of what a paid invoice collected and refunds it to the card.
What is refundable is what was paid minus every credit note already issued against the invoice,
whatever its source (the engine's own, or a refund made in the Stripe dashboard): refunds plus
credit notes never exceed what was paid."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import ClassVar

from billing.errors import BillingError

CREDITABLE_STATUSES = frozenset({"paid"})


class CreditRefused(BillingError):
    """The invoice cannot be credited that much: not paid, or the amount is above what is left
    to refund."""

    code: ClassVar[str] = "credit_refused"


def refundable(amount_paid: int, credited: Iterable[int]) -> int:
    """What is left to credit: paid minus every credit note already issued (never below 0)."""
    left = amount_paid - sum(credited)
    return max(left, 0)


def check_credit(status: str, amount_paid: int, credited: Iterable[int], amount: int) -> int:
    """The amount, if the invoice may be credited that much; else `CreditRefused` naming why.
    Returns what is left to credit after it."""
    if type(amount) is not int or amount <= 0:
        raise CreditRefused(f"the amount must be a positive integer of minor units, not {amount!r}")
    if status not in CREDITABLE_STATUSES:
        raise CreditRefused(f"only a paid invoice can be credited (this one is {status})")
    left = refundable(amount_paid, credited)
    if amount > left:
        raise CreditRefused(
            f"{amount} is more than is left to credit on this invoice ({left} of {amount_paid} "
            "paid)"
        )
    return left - amount


def credit_note_series(at: datetime) -> str:
    """Credit notes are numbered in a series of their own per year: `CN-{year}`."""
    return f"CN-{at.year}"
