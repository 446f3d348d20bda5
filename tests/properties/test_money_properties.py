"""Money conversion, property-based (integers in the minor unit, never a float).

For every currency in `kernel.money.CURRENCIES`: a major-unit amount written at
the currency's precision converts to Stripe's minor unit and back exactly, in
every form a client may send it; anything more precise is refused, never
rounded. The precision each currency takes is written out here from Stripe's
currency table (docs.stripe.com/currencies), not read from `kernel.money`, so a
wrong table entry fails instead of agreeing with itself.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kernel.money import CURRENCIES, MAX_MINOR, InvalidAmountError, from_minor, to_minor

ZERO_DECIMAL = {
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
    "pyg", "rwf", "vnd", "vuv", "xaf", "xof", "xpf",
}  # fmt: skip
THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}
WHOLE_UNITS_X100 = {"isk", "ugx"}


def precision(code: str) -> tuple[int, int]:
    """(decimals a person writes, decimals of Stripe's minor unit) for a currency."""
    if code in ZERO_DECIMAL:
        return 0, 0
    if code in THREE_DECIMAL:
        return 2, 3  # Stripe takes three decimals, the last one always 0
    if code in WHOLE_UNITS_X100:
        return 0, 2  # whole units, sent ×100
    return 2, 2


CODES = sorted(CURRENCIES)
# Each example checks every currency, so a modest count covers the table many times over.
EXAMPLES = settings(max_examples=60, deadline=None)


def writable_amount(data: st.DataObject, code: str) -> tuple[Decimal, int]:
    """An amount at the currency's precision and the minor units Stripe expects for it."""
    decimals, exponent = precision(code)
    step = 10 ** (exponent - decimals)
    steps = data.draw(st.integers(min_value=1, max_value=MAX_MINOR // step), label=code)
    return Decimal(steps).scaleb(-decimals), steps * step


def spellings(amount: Decimal, decimals: int) -> list[Decimal | int | str]:
    """The forms a client may send one amount in: strings with and without trailing
    zeros, a Decimal, and an int when the amount is whole."""
    exact = f"{amount:.{decimals}f}"
    forms: list[Decimal | int | str] = [exact, Decimal(exact), f"{amount.normalize():f}"]
    if decimals:
        forms.append(exact + "0")
    if amount == amount.to_integral_value():
        forms.append(int(amount))
    return forms


def test_every_currency_in_the_table_has_a_known_precision():
    """The table and Stripe's lists agree on what each currency is."""
    assert len(CODES) > 100
    for code, currency in CURRENCIES.items():
        assert (currency.decimals, currency.exponent) == precision(code), code


@EXAMPLES
@given(data=st.data())
def test_an_amount_at_the_currency_precision_round_trips_exactly(data):
    for code in CODES:
        decimals, _ = precision(code)
        amount, minor = writable_amount(data, code)
        for form in spellings(amount, decimals):
            assert to_minor(form, code) == minor, (code, form)
            assert to_minor(form, code.upper()) == minor, (code, form)
        back = from_minor(minor, code)
        assert back == amount, code
        assert -back.as_tuple().exponent == decimals, code  # at the currency's precision
        assert to_minor(str(back), code) == minor, code


@EXAMPLES
@given(data=st.data())
def test_more_precision_than_the_currency_takes_is_refused_not_rounded(data):
    extra_digits = data.draw(st.integers(min_value=1, max_value=6))
    # A non-zero fraction of the smallest writable amount: every such value lies
    # strictly between two valid amounts, so accepting it would mean rounding.
    fraction = data.draw(st.integers(min_value=1, max_value=10**extra_digits - 1))
    for code in CODES:
        decimals, _ = precision(code)
        amount, _ = writable_amount(data, code)
        too_precise = amount + Decimal(fraction).scaleb(-(decimals + extra_digits))
        for form in (too_precise, f"{too_precise:f}"):
            with pytest.raises(InvalidAmountError):
                to_minor(form, code)


@EXAMPLES
@given(data=st.data())
def test_minor_units_off_the_currency_step_are_refused(data):
    for code in sorted(THREE_DECIMAL | WHOLE_UNITS_X100):
        decimals, exponent = precision(code)
        step = 10 ** (exponent - decimals)
        whole = data.draw(st.integers(min_value=0, max_value=MAX_MINOR // step - 1))
        minor = whole * step + data.draw(st.integers(min_value=1, max_value=step - 1))
        with pytest.raises(InvalidAmountError):
            from_minor(minor, code)


@settings(max_examples=30, deadline=None)
@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_a_float_is_never_taken_as_money(value):
    for code in CODES:
        with pytest.raises(InvalidAmountError):
            to_minor(value, code)
