"""Money conversion against Stripe's currency table (integers in the minor unit, never a float).

The expectations here are written out from Stripe's documentation
(docs.stripe.com/currencies), not derived from `kernel.money`, so a wrong
entry in the module's table fails a test instead of agreeing with itself.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from kernel.money import (
    CURRENCIES,
    InvalidAmountError,
    UnsupportedCurrencyError,
    currency_get,
    format_minor,
    from_minor,
    to_minor,
)

STRIPE_MAX_MINOR = 99_999_999

# Stripe's zero-decimal list, minus UGX, which Stripe takes ×100 like ISK.
ZERO_DECIMAL = {
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga",
    "pyg", "rwf", "vnd", "vuv", "xaf", "xof", "xpf",
}  # fmt: skip
THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}
WHOLE_UNITS_X100 = {"isk", "ugx"}


def kind_of(code: str) -> str:
    if code in ZERO_DECIMAL:
        return "zero"
    if code in THREE_DECIMAL:
        return "three"
    if code in WHOLE_UNITS_X100:
        return "x100"
    return "two"


# Per kind: a valid amount at the finest precision and its minor units; one digit
# too precise; the largest amount Stripe takes and its minor units; one step above it.
CASES = {
    "two": {
        "valid": ("12.34", 1234),
        "too_precise": "12.345",
        "max": ("999999.99", 99_999_999),
        "over": "1000000.00",
    },
    "zero": {
        "valid": ("1234", 1234),
        "too_precise": "1234.5",
        "max": ("99999999", 99_999_999),
        "over": "100000000",
    },
    "three": {
        "valid": ("1.23", 1230),
        "too_precise": "1.234",
        "max": ("99999.99", 99_999_990),
        "over": "100000",
    },
    "x100": {
        "valid": ("500", 50000),
        "too_precise": "500.5",
        "max": ("999999", 99_999_900),
        "over": "1000000",
    },
}

ALL_CODES = sorted(CURRENCIES)


def assert_invalid_amount(value, currency: str = "usd") -> InvalidAmountError:
    with pytest.raises(InvalidAmountError) as info:
        to_minor(value, currency)
    assert info.value.status == 422
    assert info.value.code == "invalid_amount"
    return info.value


# --- the table ------------------------------------------------------------------


def test_table_holds_every_special_currency_and_the_common_ones():
    expected = ZERO_DECIMAL | THREE_DECIMAL | WHOLE_UNITS_X100 | {"usd", "eur", "gbp", "huf"}
    assert expected <= set(CURRENCIES)
    assert all(code == code.lower() and len(code) == 3 for code in CURRENCIES)


@pytest.mark.parametrize("code", ALL_CODES)
def test_round_trip_at_the_finest_precision(code):
    major, minor = CASES[kind_of(code)]["valid"]

    assert to_minor(major, code) == minor
    assert type(to_minor(major, code)) is int
    back = from_minor(minor, code)
    assert isinstance(back, Decimal)
    assert back == Decimal(major)
    assert str(back) == major  # at the currency's display precision
    assert to_minor(back, code) == minor


@pytest.mark.parametrize("code", ALL_CODES)
def test_more_decimals_than_allowed_is_refused_not_rounded(code):
    too_precise = CASES[kind_of(code)]["too_precise"]

    error = assert_invalid_amount(too_precise, code)
    assert error.extra["currency"] == code
    assert_invalid_amount(Decimal(too_precise), code)


@pytest.mark.parametrize("code", ALL_CODES)
def test_stripe_maximum_is_the_edge(code):
    case = CASES[kind_of(code)]
    major, minor = case["max"]

    assert to_minor(major, code) == minor <= STRIPE_MAX_MINOR
    assert to_minor(Decimal(major), code) == minor
    error = assert_invalid_amount(case["over"], code)
    assert Decimal(error.extra["maximum"]) == Decimal(major)


@pytest.mark.parametrize(
    ("major", "currency", "minor"),
    [
        ("10.50", "usd", 1050),
        ("0.01", "usd", 1),
        ("10.5", "eur", 1050),
        ("500", "jpy", 500),
        ("1", "krw", 1),
        ("1.23", "kwd", 1230),
        ("0.01", "bhd", 10),
        ("500", "isk", 50000),
        ("7", "ugx", 700),
        (10, "usd", 1000),
        (500, "jpy", 500),
        (5, "isk", 500),
        (Decimal("10.5"), "usd", 1050),
        (Decimal("1E+2"), "usd", 10000),
        (" 10.50 ", "usd", 1050),
        ("\t7\n", "ugx", 700),
        ("10.50", "USD", 1050),
        ("1.23", "Kwd", 1230),
    ],
)
def test_known_values_from_stripes_rules(major, currency, minor):
    assert to_minor(major, currency) == minor


@pytest.mark.parametrize(
    "value",
    [
        "0",
        "0.00",
        0,
        Decimal("0"),
        Decimal("-0"),
        "-1",
        -1,
        Decimal("-1"),
        "-0.01",
        "NaN",
        "Infinity",
        "-Infinity",
        "1e999999999",
        "1E2",
        Decimal("1e999999999"),
        Decimal("NaN"),
        Decimal("sNaN"),
        Decimal("Infinity"),
        Decimal("-Infinity"),
        Decimal("1E-999999999"),
        10**40,
        "0.005",  # would round to a cent either way
        "1_000",
        "1,000",
        "+5",
        "0x10",
        ".5",
        "5.",
        "",
        "   ",
        "١٢",  # Arabic-Indic digits: Decimal() reads them as 12, the pattern must not
        "５",  # a full-width digit
    ],
    ids=repr,
)
def test_refused_amounts(value):
    assert_invalid_amount(value)


@pytest.mark.parametrize(
    "value", [1.5, 1.0, float("nan"), True, False, None, b"10", [10]], ids=repr
)
def test_floats_bools_and_other_types_are_refused(value):
    assert_invalid_amount(value)


@pytest.mark.parametrize("currency", ["xxx", "", "us", "usdx", " usd", None, 840])
def test_unknown_currency_is_refused(currency):
    with pytest.raises(UnsupportedCurrencyError) as info:
        to_minor("10.00", currency)
    assert info.value.status == 422
    assert info.value.code == "unsupported_currency"
    with pytest.raises(UnsupportedCurrencyError):
        from_minor(1000, currency)


def test_currency_get_is_case_insensitive():
    assert currency_get("USD") is currency_get("usd")
    assert currency_get("JPY").code == "jpy"


@pytest.mark.parametrize(
    ("minor", "currency", "shown"),
    [
        (1000, "usd", "10.00"),
        (1, "usd", "0.01"),
        (500, "jpy", "500"),
        (1230, "kwd", "1.23"),
        (1000, "kwd", "1.00"),
        (50000, "isk", "500"),
        (700, "UGX", "7"),
        (0, "usd", "0.00"),
    ],
)
def test_from_minor_has_the_display_precision(minor, currency, shown):
    assert str(from_minor(minor, currency)) == shown


@pytest.mark.parametrize("minor", [10.5, True, "1050", Decimal(1050)], ids=repr)
def test_from_minor_takes_only_int(minor):
    with pytest.raises(TypeError):
        from_minor(minor, "usd")


def test_format_minor():
    assert format_minor(1050, "usd") == "10.50 USD"
    assert format_minor(1230, "kwd") == "1.23 KWD"
    assert format_minor(500, "JPY") == "500 JPY"


@pytest.mark.parametrize(("minor", "currency"), [(1235, "kwd"), (50050, "isk"), (701, "ugx")])
def test_from_minor_refuses_an_amount_that_is_not_a_whole_step(minor, currency):
    with pytest.raises(InvalidAmountError):
        from_minor(minor, currency)
