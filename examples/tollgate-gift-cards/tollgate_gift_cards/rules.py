"""What a gift card may be worth, from `settings.TOLLGATE_GIFT_CARDS` over the defaults.

The rule: every amount is an integer in the currency's Stripe minor unit
(2500 is 25.00 USD); nothing here is ever a float. Tollgate's money helper
(`kernel.money`) knows each currency's minor unit, for display and input.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from kernel.money import format_minor

DEFAULTS = {
    "CURRENCY": "usd",
    "MIN_VALUE": 500,
    "MAX_VALUE": 50_000,
    # Values go in whole steps of this many minor units (100: whole dollars).
    "STEP": 100,
    # The values a shop suggests; any value within the bounds may be bought.
    "AMOUNTS": [1_000, 2_500, 5_000, 10_000],
}


@dataclass(frozen=True)
class GiftCardRules:
    currency: str
    min_value: int
    max_value: int
    step: int
    amounts: tuple[int, ...]

    def display(self, amount: int) -> str:
        """`2500` as `25.00 USD` (`2500` JPY as `2500 JPY`)."""
        return format_minor(amount, self.currency)


def gift_card_rules() -> GiftCardRules:
    conf = {**DEFAULTS, **getattr(settings, "TOLLGATE_GIFT_CARDS", {})}
    return GiftCardRules(
        currency=str(conf["CURRENCY"]).lower(),
        min_value=int(conf["MIN_VALUE"]),
        max_value=int(conf["MAX_VALUE"]),
        step=int(conf["STEP"]),
        amounts=tuple(int(a) for a in conf["AMOUNTS"]),
    )
