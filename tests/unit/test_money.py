"""Money arithmetic and the proration rounding rule."""

from __future__ import annotations

import operator
import pickle
from collections.abc import Callable
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing.errors import CurrencyMismatch
from billing.money import Money, format_amount, mul_ratio, sum_money, zero

amounts = st.integers(min_value=-(10**15), max_value=10**15)
usd = st.builds(Money, amounts, st.just("usd"))
denominators = st.integers(min_value=1, max_value=10**6)
numerators = st.integers(min_value=-(10**6), max_value=10**6)


# --- construction ---------------------------------------------------------------------------


@pytest.mark.parametrize("amount", [12.34, 1.0, True, False, "100", None])
def test_amount_must_be_an_int(amount: object) -> None:
    with pytest.raises(TypeError, match="Money.amount must be an int"):
        Money(amount, "usd")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["USD", "us", "usdd", "", "u$d", None, 840])
def test_currency_must_be_a_lower_case_iso_code(currency: object) -> None:
    with pytest.raises(ValueError, match="lower-case ISO 4217"):
        Money(100, currency)  # type: ignore[arg-type]


def test_money_is_immutable() -> None:
    price = Money(4900, "usd")
    with pytest.raises(AttributeError):
        price.amount = 1  # type: ignore[misc]


# --- arithmetic -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right", "total", "difference"),
    [
        (Money(4900, "usd"), Money(100, "usd"), Money(5000, "usd"), Money(4800, "usd")),
        (Money(0, "eur"), Money(-250, "eur"), Money(-250, "eur"), Money(250, "eur")),
        (Money(1, "jpy"), Money(1, "jpy"), Money(2, "jpy"), Money(0, "jpy")),
    ],
)
def test_add_and_sub(left: Money, right: Money, total: Money, difference: Money) -> None:
    assert left + right == total
    assert left - right == difference


def test_neg_and_multiplication_by_a_whole_quantity() -> None:
    assert -Money(250, "usd") == Money(-250, "usd")
    assert Money(5, "usd") * 3 == Money(15, "usd")
    assert 3 * Money(5, "usd") == Money(15, "usd")


@pytest.mark.parametrize("factor", [1.5, True, Fraction(1, 2)])
def test_multiplication_refuses_anything_but_int(factor: object) -> None:
    with pytest.raises(TypeError):
        _ = Money(5, "usd") * factor  # type: ignore[operator]


@pytest.mark.parametrize(
    "op",
    [operator.add, operator.sub, operator.lt, operator.le, operator.gt, operator.ge],
    ids=["add", "sub", "lt", "le", "gt", "ge"],
)
def test_mixing_currencies_raises(op: Callable[[Money, Money], object]) -> None:
    with pytest.raises(CurrencyMismatch) as caught:
        op(Money(100, "usd"), Money(100, "eur"))
    assert caught.value.code == "currency_mismatch"
    assert (caught.value.expected, caught.value.actual) == ("usd", "eur")


def test_equality_across_currencies_is_false_not_an_error() -> None:
    assert Money(100, "usd") != Money(100, "eur")
    assert len({Money(100, "usd"), Money(100, "eur"), Money(100, "usd")}) == 2


def test_comparison_with_a_bare_int_is_refused() -> None:
    with pytest.raises(TypeError):
        _ = Money(1, "usd") < 2  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = Money(1, "usd") + 1  # type: ignore[operator]


def test_zero_and_sum_money() -> None:
    assert zero("usd") == Money(0, "usd")
    assert zero("usd").is_zero()
    assert sum_money([], "eur") == Money(0, "eur")
    assert sum_money([Money(1, "usd"), Money(2, "usd"), Money(-4, "usd")], "usd") == Money(
        -1, "usd"
    )


def test_sum_money_refuses_an_item_in_another_currency() -> None:
    with pytest.raises(CurrencyMismatch):
        sum_money([Money(1, "usd"), Money(2, "eur")], "usd")
    with pytest.raises(CurrencyMismatch):
        sum_money([Money(1, "usd")], "eur")


def test_currency_mismatch_survives_pickling() -> None:
    error = CurrencyMismatch("usd", "eur")
    copy = pickle.loads(pickle.dumps(error))
    assert (type(copy), str(copy), copy.expected, copy.actual) == (
        CurrencyMismatch,
        str(error),
        "usd",
        "eur",
    )


@given(usd, usd)
def test_addition_commutes_and_subtraction_undoes_it(a: Money, b: Money) -> None:
    assert a + b == b + a
    assert (a + b) - b == a
    negated = -a
    assert -negated == a
    assert a - b == a + (-b)


@given(usd, usd, usd)
def test_addition_associates(a: Money, b: Money, c: Money) -> None:
    assert (a + b) + c == a + (b + c)


@given(st.lists(usd, max_size=20))
def test_sum_money_is_the_sum_of_amounts(items: list[Money]) -> None:
    assert sum_money(items, "usd") == Money(sum(m.amount for m in items), "usd")


@given(usd, usd)
def test_ordering_follows_the_amounts(a: Money, b: Money) -> None:
    assert (a < b) == (a.amount < b.amount)
    assert (a <= b) == (a.amount <= b.amount)
    assert (a > b) == (a.amount > b.amount)
    assert (a >= b) == (a.amount >= b.amount)


# --- display --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("money", "shown"),
    [
        (Money(1234, "usd"), "$12.34"),
        (Money(5, "usd"), "$0.05"),
        (Money(-5, "usd"), "-$0.05"),
        (Money(0, "usd"), "$0.00"),
        (Money(499_000, "usd"), "$4990.00"),
        (Money(1234, "eur"), "12.34 EUR"),
        (Money(-1234, "gbp"), "-12.34 GBP"),
        (Money(1234, "jpy"), "1234 JPY"),  # zero-decimal currency: minor unit is the yen
        (Money(1234, "kwd"), "1.234 KWD"),  # three-decimal currency
    ],
)
def test_format(money: Money, shown: str) -> None:
    assert money.format() == shown
    assert format_amount(money.amount, money.currency) == shown


# --- mul_ratio: amount * numerator / denominator, round half to even -------------------------


@pytest.mark.parametrize(
    ("amount", "numerator", "denominator", "expected"),
    [
        (4900, 15, 30, 2450),  # exact: half a month of $49
        (4900, 1, 3, 1633),  # 1633.33... rounds down
        (4900, 2, 3, 3267),  # 3266.66... rounds up
        (10, 1, 4, 2),  # 2.5 -> 2 (tie to even)
        (30, 1, 4, 8),  # 7.5 -> 8 (tie to even)
        (5, 1, 2, 2),  # 2.5 -> 2
        (7, 1, 2, 4),  # 3.5 -> 4
        (1, 1, 2, 0),  # 0.5 -> 0
        (-10, 1, 4, -2),  # -2.5 -> -2: ties are symmetric around zero
        (-30, 1, 4, -8),  # -7.5 -> -8
        (-4900, 1, 3, -1633),
        (4900, -1, 3, -1633),  # a negative numerator is a credit too
        (0, 7, 9, 0),
        (4900, 0, 30, 0),
        (4900, 31, 31, 4900),
        (49_900, 29, 28, 51_682),  # ratios above 1 are allowed (51,682.14...)
    ],
)
def test_mul_ratio_examples(amount: int, numerator: int, denominator: int, expected: int) -> None:
    assert mul_ratio(amount, numerator, denominator) == expected


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((100, 1, 0), ValueError),
        ((100, 1, -3), ValueError),
        ((100.0, 1, 3), TypeError),
        ((100, 0.5, 1), TypeError),
        ((100, 1, 3.0), TypeError),
        ((True, 1, 3), TypeError),
        ((100, True, 3), TypeError),
    ],
)
def test_mul_ratio_refuses_bad_arguments(args: tuple[object, ...], error: type[Exception]) -> None:
    with pytest.raises(error):
        mul_ratio(*args)  # type: ignore[arg-type]


@given(amounts, numerators, denominators)
def test_mul_ratio_is_the_exact_ratio_rounded_half_to_even(a: int, n: int, d: int) -> None:
    # Fraction.__round__ rounds half to even on the exact rational: an independent oracle.
    assert mul_ratio(a, n, d) == round(Fraction(a * n, d))


@given(amounts, numerators, denominators)
def test_mul_ratio_is_within_half_a_minor_unit(a: int, n: int, d: int) -> None:
    assert abs(mul_ratio(a, n, d) * d - a * n) * 2 <= d


@given(amounts, numerators, denominators)
def test_mul_ratio_credit_mirrors_charge(a: int, n: int, d: int) -> None:
    assert mul_ratio(-a, n, d) == -mul_ratio(a, n, d)


@given(amounts, denominators)
def test_mul_ratio_whole_and_nothing(a: int, d: int) -> None:
    assert mul_ratio(a, d, d) == a
    assert mul_ratio(a, 0, d) == 0


@given(st.integers(min_value=0, max_value=10**12), denominators, st.data())
def test_mul_ratio_is_monotone_in_the_numerator(a: int, d: int, data: st.DataObject) -> None:
    n1 = data.draw(st.integers(min_value=0, max_value=d))
    n2 = data.draw(st.integers(min_value=n1, max_value=d))
    assert mul_ratio(a, n1, d) <= mul_ratio(a, n2, d) <= a


@given(amounts, denominators, st.data())
def test_used_plus_unused_is_the_whole_within_one_minor_unit(
    a: int, d: int, data: st.DataObject
) -> None:
    # Proration splits a period into the part used and the part credited back; with one rounding
    # rule applied to both halves they can differ from the whole by at most one minor unit.
    used = data.draw(st.integers(min_value=0, max_value=d))
    assert abs(mul_ratio(a, used, d) + mul_ratio(a, d - used, d) - a) <= 1
