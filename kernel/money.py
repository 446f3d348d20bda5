"""Money: integer minor units, converted with Stripe's own currency table.

The one rule: an amount is an `int` in the currency's Stripe minor unit from the
moment it passes `to_minor` until it reaches Stripe. No float ever; an input with
more precision than the currency allows is refused, never rounded.

Stripe's table has four kinds of currency:
- two-decimal (most): "10.50" USD is 1050;
- zero-decimal (JPY, KRW, …): "500" JPY is 500;
- three-decimal (BHD, JOD, KWD, OMR, TND): Stripe takes three decimals but the
  last digit must be 0, so "1.23" KWD is 1230 and "1.234" is refused;
- ISK and UGX: charged in whole units but sent to Stripe ×100, so "500" ISK
  is 50000 and "500.5" is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal, InvalidOperation

from kernel.errors import DomainError, ErrorCode


class InvalidAmountError(DomainError):
    code = ErrorCode.INVALID_AMOUNT
    status = 422


class UnsupportedCurrencyError(DomainError):
    code = ErrorCode.UNSUPPORTED_CURRENCY
    status = 422


@dataclass(frozen=True)
class Currency:
    code: str
    # Decimal places a person may write ("10.50" has 2).
    decimals: int
    # Decimal places in Stripe's minor unit: minor = major × 10**exponent.
    exponent: int

    @property
    def step(self) -> int:
        """Minor units per smallest amount a person can write (1, 10 or 100)."""
        return 10 ** (self.exponent - self.decimals)


ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])
WHOLE_UNITS_SENT_X100 = frozenset({"isk", "ugx"})

# Stripe's presentment currencies (docs.stripe.com/currencies), lower case.
_TWO_DECIMAL = [
    "aed",
    "afn",
    "all",
    "amd",
    "ang",
    "aoa",
    "ars",
    "aud",
    "awg",
    "azn",
    "bam",
    "bbd",
    "bdt",
    "bgn",
    "bmd",
    "bnd",
    "bob",
    "brl",
    "bsd",
    "bwp",
    "byn",
    "bzd",
    "cad",
    "cdf",
    "chf",
    "cny",
    "cop",
    "crc",
    "cve",
    "czk",
    "dkk",
    "dop",
    "dzd",
    "egp",
    "etb",
    "eur",
    "fjd",
    "fkp",
    "gbp",
    "gel",
    "gip",
    "gmd",
    "gtq",
    "gyd",
    "hkd",
    "hnl",
    "htg",
    "huf",
    "idr",
    "ils",
    "inr",
    "jmd",
    "kes",
    "kgs",
    "khr",
    "kyd",
    "kzt",
    "lak",
    "lbp",
    "lkr",
    "lrd",
    "lsl",
    "mad",
    "mdl",
    "mkd",
    "mmk",
    "mnt",
    "mop",
    "mur",
    "mvr",
    "mwk",
    "mxn",
    "myr",
    "mzn",
    "nad",
    "ngn",
    "nio",
    "nok",
    "npr",
    "nzd",
    "pab",
    "pen",
    "pgk",
    "php",
    "pkr",
    "pln",
    "qar",
    "ron",
    "rsd",
    "rub",
    "sar",
    "sbd",
    "scr",
    "sek",
    "sgd",
    "shp",
    "sle",
    "sos",
    "srd",
    "std",
    "szl",
    "thb",
    "tjs",
    "top",
    "try",
    "ttd",
    "twd",
    "tzs",
    "uah",
    "usd",
    "uyu",
    "uzs",
    "wst",
    "xcd",
    "yer",
    "zar",
    "zmw",
]

CURRENCIES: dict[str, Currency] = {
    **{code: Currency(code, 2, 2) for code in _TWO_DECIMAL},
    **{code: Currency(code, 0, 0) for code in ZERO_DECIMAL},
    **{code: Currency(code, 2, 3) for code in THREE_DECIMAL},
    **{code: Currency(code, 0, 2) for code in WHOLE_UNITS_SENT_X100},
}

_DECIMAL_STRING = re.compile(r"[0-9]{1,32}(\.[0-9]{1,32})?")

# Stripe refuses amounts above eight digits in the minor unit.
MAX_MINOR = 99_999_999


def currency_get(code: str) -> Currency:
    currency = CURRENCIES.get(code.lower()) if isinstance(code, str) else None
    if currency is None:
        raise UnsupportedCurrencyError(
            f"Currency {code!r} is not one Stripe can charge.", currency=code
        )
    return currency


def to_minor(value: Decimal | int | str, currency: str) -> int:
    """Convert a major-unit amount ("10.50", 10, Decimal("10.5")) to Stripe's minor unit.

    Refuses (422) zero, negatives, NaN, infinities, more decimals than the
    currency allows and anything above Stripe's maximum.
    """
    cur = currency_get(currency)
    if isinstance(value, bool) or not isinstance(value, Decimal | int | str):
        raise InvalidAmountError("An amount must be a decimal string or a number.", amount=None)
    if isinstance(value, str) and not _DECIMAL_STRING.fullmatch(value.strip()):
        raise InvalidAmountError(
            f'{value!r} is not a decimal amount such as "10.50".', amount=value
        )
    try:
        amount = Decimal(value.strip() if isinstance(value, str) else value)
    except (InvalidOperation, ValueError):  # pragma: no cover - the pattern admits only numbers
        raise InvalidAmountError(f"{value!r} is not a number.", amount=str(value)) from None
    if not amount.is_finite():
        raise InvalidAmountError("An amount must be a finite number.", amount=str(value))
    if amount <= 0:
        raise InvalidAmountError("An amount must be greater than zero.", amount=str(value))
    if amount > Decimal(MAX_MINOR).scaleb(-cur.exponent):
        raise InvalidAmountError(
            "The amount is above the most Stripe can charge at once.",
            amount=str(value),
            currency=cur.code,
            maximum=str(from_minor(MAX_MINOR - MAX_MINOR % cur.step, cur.code)),
        )
    if amount != amount.quantize(Decimal(1).scaleb(-cur.decimals), rounding=ROUND_DOWN):
        raise InvalidAmountError(
            f"{cur.code.upper()} amounts take at most {cur.decimals} decimal places.",
            amount=str(value),
            currency=cur.code,
            decimals=cur.decimals,
        )
    return int(amount.scaleb(cur.exponent))


def from_minor(minor: int, currency: str) -> Decimal:
    """The major-unit amount of a Stripe minor-unit integer, at the currency's precision."""
    cur = currency_get(currency)
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError("minor units are an int")
    if minor % cur.step:
        raise InvalidAmountError(
            f"{minor} is not a valid {cur.code.upper()} amount in Stripe's minor unit "
            f"(it must be a multiple of {cur.step}).",
            amount=minor,
            currency=cur.code,
        )
    return Decimal(minor).scaleb(-cur.exponent).quantize(Decimal(1).scaleb(-cur.decimals))


def format_minor(minor: int, currency: str) -> str:
    """A display string such as "10.50 USD"."""
    return f"{from_minor(minor, currency)} {currency.upper()}"
