"""Money: integer minor units plus an ISO 4217 currency code, and exact ratio arithmetic.

Amounts are always `int` minor units (cents for usd), never floats: a float cannot represent most
decimal amounts, and errors compound across prorations and sums. Currency codes are the lower-case
ISO codes Stripe uses ("usd", "eur").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from billing.errors import CurrencyMismatch

__all__ = [
    "Money",
    "format_amount",
    "is_currency_code",
    "minor_unit_exponent",
    "mul_ratio",
    "sum_money",
    "zero",
]

_CURRENCY_CODE = re.compile(r"[a-z]{3}")

# ISO 4217 currencies whose minor unit is not 1/100, as Stripe lists them. Only display depends on
# this: amounts are stored and computed in minor units whatever the exponent.
_ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
_THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())

_SYMBOLS = {"usd": "$"}


def is_currency_code(value: object) -> bool:
    """True for a lower-case three-letter code such as "usd"."""
    return isinstance(value, str) and _CURRENCY_CODE.fullmatch(value) is not None


def minor_unit_exponent(currency: str) -> int:
    """Number of decimal places between the major and the minor unit (2 for usd, 0 for jpy)."""
    if currency in _ZERO_DECIMAL:
        return 0
    if currency in _THREE_DECIMAL:
        return 3
    return 2


def _require_int(name: str, value: object) -> int:
    # bool is a subclass of int; True cents is always a bug, so it is refused like a float.
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in minor units of one currency. Negative amounts are credits."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        _require_int("Money.amount", self.amount)
        if not is_currency_code(self.currency):
            raise ValueError(
                f"Money.currency must be a lower-case ISO 4217 code like 'usd', "
                f"got {self.currency!r}"
            )

    # The operators are typed for what is meaningful, and still check at run time: a bare int or
    # a float mixed into money must fail loudly rather than produce a plausible number.
    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(self.currency, other.currency)

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __mul__(self, factor: int) -> Money:
        """Unit price times a whole quantity. Fractions go through `mul_ratio`, never floats."""
        if isinstance(factor, bool) or not isinstance(factor, int):
            return NotImplemented
        return Money(self.amount * factor, self.currency)

    __rmul__ = __mul__

    # Ordering only makes sense within one currency; equality (from the dataclass) does not
    # raise, so Money can be used in sets and dict keys: 1 usd is simply not equal to 1 eur.
    def __lt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount >= other.amount

    def is_zero(self) -> bool:
        return self.amount == 0

    def format(self) -> str:
        """Human display: "$12.34" / "-$0.05" for usd, "12.34 EUR" / "1234 JPY" otherwise."""
        return format_amount(self.amount, self.currency)


def format_amount(amount: int, currency: str) -> str:
    """Display form of `amount` minor units of `currency` (see `Money.format`)."""
    _require_int("amount", amount)
    exponent = minor_unit_exponent(currency)
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(amount), 10**exponent)
    digits = f"{major}.{minor:0{exponent}d}" if exponent else str(major)
    symbol = _SYMBOLS.get(currency)
    if symbol is not None:
        return f"{sign}{symbol}{digits}"
    return f"{sign}{digits} {currency.upper()}"


def zero(currency: str) -> Money:
    return Money(0, currency)


def sum_money(items: Iterable[Money], currency: str) -> Money:
    """Total of `items`, all of which must be in `currency` (an empty total is zero)."""
    total = zero(currency)
    for item in items:
        total = total + item
    return total


def mul_ratio(amount: int, numerator: int, denominator: int) -> int:
    """`amount * numerator / denominator`, rounded half to even, in exact integer arithmetic.

    The rounding rule: the exact rational result is rounded to the nearest integer; an exact tie
    (a remainder of one half) goes to the even neighbour. Round-half-even is unbiased, so summing
    many prorated amounts does not drift in either direction, and it is symmetric: the credit for
    an unused period is exactly the negative of the matching charge
    (`mul_ratio(-a, n, d) == -mul_ratio(a, n, d)`).

    `denominator` must be positive; `amount` and `numerator` may be negative (credits).
    """
    _require_int("amount", amount)
    _require_int("numerator", numerator)
    _require_int("denominator", denominator)
    if denominator <= 0:
        raise ValueError(f"denominator must be positive, got {denominator}")
    # Floor division gives 0 <= remainder < denominator, also for negative products, so the
    # comparison below picks the nearest integer on both sides of zero.
    quotient, remainder = divmod(amount * numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        return quotient + 1
    return quotient
