"""Credit notes and refunds (ADR 0020), pure: what may still be credited on an invoice, by which
method, and the number series. Amounts are integer minor units; nothing here rounds.

A credit note on a **paid** invoice gives back part or all of what it collected: refunded to
the card (`refund`) or put on the subscription's credit balance (`credit_balance`). What is
left to give back is what was paid minus every such credit note already issued against the
invoice, whatever its source (the engine's own, or a refund made in the Stripe dashboard):
refunds plus credit notes never exceed what was paid.

A credit note on an **open** (or uncollectible) invoice lowers what it still asks for
(`reduce_amount_due`). What is left to lower is the invoice's amount due (already lowered by
the credit notes Stripe applied) minus those still on their way to Stripe. Such a credit note
gave back nothing that was paid, so it never counts against what a paid invoice may refund."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from billing.errors import BillingError

REFUND = "refund"
CREDIT_BALANCE = "credit_balance"
REDUCE_AMOUNT_DUE = "reduce_amount_due"
METHODS = (REFUND, CREDIT_BALANCE, REDUCE_AMOUNT_DUE)

PAID_STATUSES = frozenset({"paid"})
OPEN_STATUSES = frozenset({"open", "uncollectible"})


class CreditRefused(BillingError):
    """The invoice cannot be credited that much, or that way: the method does not fit its
    status, or the amount is above what is left."""

    code: ClassVar[str] = "credit_refused"


@dataclass(frozen=True)
class Credited:
    """A credit note already issued against the invoice."""

    amount: int
    method: str
    status: str  # pending | succeeded | failed


def default_method(status: str) -> str:
    """The method when the request names none: an open invoice's amount due goes down, a paid
    invoice is refunded to the card."""
    return REDUCE_AMOUNT_DUE if status in OPEN_STATUSES else REFUND


def refundable(amount_paid: int, credited: Iterable[int]) -> int:
    """What is left to give back of a payment: paid minus every credit note already issued
    against it (never below 0)."""
    left = amount_paid - sum(credited)
    return max(left, 0)


def left_to_credit(
    method: str, amount_paid: int, amount_due: int, notes: Iterable[Credited]
) -> int:
    """What a new credit note of `method` may still take, whatever the invoice's status."""
    notes = list(notes)
    if method == REDUCE_AMOUNT_DUE:
        # The amount due is lowered when Stripe applied a credit note; those on their way
        # will lower it too.
        on_their_way = sum(
            n.amount for n in notes if n.method == REDUCE_AMOUNT_DUE and n.status == "pending"
        )
        return max(amount_due - on_their_way, 0)
    # A refund Stripe refused gave nothing back: it does not count.
    given_back = [n.amount for n in notes if n.method != REDUCE_AMOUNT_DUE and n.status != "failed"]
    return refundable(amount_paid, given_back)


def check_credit(
    status: str,
    method: str,
    amount_paid: int,
    amount_due: int,
    notes: Iterable[Credited],
    amount: int,
) -> int:
    """What is left to credit after `amount`, if the invoice may be credited that much that
    way; else `CreditRefused` naming why."""
    if type(amount) is not int or amount <= 0:
        raise CreditRefused(f"the amount must be a positive integer of minor units, not {amount!r}")
    if method not in METHODS:
        raise CreditRefused(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    if method == REDUCE_AMOUNT_DUE and status not in OPEN_STATUSES:
        raise CreditRefused(
            f"only an open invoice's amount due can be lowered (this one is {status}); "
            "a paid invoice is refunded or credited to the balance"
        )
    if method != REDUCE_AMOUNT_DUE and status not in PAID_STATUSES:
        raise CreditRefused(
            f"only a paid invoice can be refunded or credited to the balance (this one is "
            f"{status}); an open invoice's amount due is lowered ({REDUCE_AMOUNT_DUE})"
        )
    left = left_to_credit(method, amount_paid, amount_due, notes)
    if amount > left:
        what = "due" if method == REDUCE_AMOUNT_DUE else "paid"
        figure = amount_due if method == REDUCE_AMOUNT_DUE else amount_paid
        raise CreditRefused(
            f"{amount} is more than is left to credit on this invoice ({left} of {figure} {what})"
        )
    return left - amount


def credit_note_series(at: datetime) -> str:
    """Credit notes are numbered in a series of their own per year: `CN-{year}`."""
    return f"CN-{at.year}"
