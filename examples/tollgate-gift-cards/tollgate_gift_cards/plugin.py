"""The `gift_card` purchase type: the hooks Tollgate calls, as plain module functions.

Registered through the `tollgate.purchasables` entry point as the plugin
`gift_cards`. The rule: hooks run inside Tollgate's transactions and never call
Stripe or the network; they refuse bad input with `InvalidInputError` (422)
before anything is created, and leave the writing to `services`.
"""

from __future__ import annotations

from typing import Any

from kernel.errors import InvalidInputError
from purchasables import hookimpl
from purchasables.types import (
    DeliveryLine,
    OrderInfo,
    PurchaseRequest,
    PurchaseType,
    Quote,
    RefundInfo,
)
from tollgate_gift_cards.models import GiftCard
from tollgate_gift_cards.rules import GiftCardRules, gift_card_rules
from tollgate_gift_cards.services import gift_card_issue, gift_card_refund_apply

PURCHASE_TYPE = "gift_card"
TEXT_FIELDS = {"recipient_name": 100, "message": 500}
SERVICE_DATA_FIELDS = ("value", *TEXT_FIELDS)


@hookimpl
def tollgate_purchase_types() -> list[PurchaseType]:
    return [
        PurchaseType(
            name=PURCHASE_TYPE,
            order_type="direct",
            label="Gift card",
            description="A code worth what was paid for it, to give to someone.",
        )
    ]


@hookimpl
def tollgate_catalog(purchase_type: str) -> dict[str, Any]:
    rules = gift_card_rules()
    return {
        "currency": rules.currency,
        "amounts": list(rules.amounts),
        "min_value": rules.min_value,
        "max_value": rules.max_value,
        "step": rules.step,
        "service_data": {
            "value": "required; an integer in minor units, within the bounds",
            "recipient_name": "optional; up to 100 characters",
            "message": "optional; up to 500 characters",
        },
    }


def _value_check(value: Any, rules: GiftCardRules) -> int:
    example = f"{rules.amounts[0] if rules.amounts else rules.min_value}"
    if value is None:
        raise InvalidInputError(
            "Say what the gift card is worth: `service_data.value`, in minor units "
            f"({example} is {rules.display(int(example))}).",
            field="service_data.value",
        )
    if type(value) is not int:  # not a bool, not a decimal: money is whole minor units
        raise InvalidInputError(
            f"`service_data.value` is a whole number of minor units ({example} is "
            f"{rules.display(int(example))}), not {value!r}.",
            field="service_data.value",
        )
    if not rules.min_value <= value <= rules.max_value:
        raise InvalidInputError(
            f"A gift card is worth from {rules.display(rules.min_value)} to "
            f"{rules.display(rules.max_value)}; {rules.display(value)} is outside that.",
            field="service_data.value",
            min_value=rules.min_value,
            max_value=rules.max_value,
        )
    if value % rules.step:
        raise InvalidInputError(
            f"A gift card's value goes in steps of {rules.display(rules.step)}; "
            f"{rules.display(value)} is not one.",
            field="service_data.value",
            step=rules.step,
        )
    return value


def _text(data: dict[str, Any], name: str) -> str:
    text = data.get(name, "")
    if not isinstance(text, str) or len(text) > TEXT_FIELDS[name]:
        raise InvalidInputError(
            f"`service_data.{name}` is text of at most {TEXT_FIELDS[name]} characters.",
            field=f"service_data.{name}",
        )
    return text.strip()


@hookimpl
def tollgate_quote(request: PurchaseRequest) -> Quote:
    extraneous = [
        name
        for name, given in [
            ("service_id", request.service_id is not None),
            ("pack_id", request.pack_id is not None),
            ("credit_amount", request.credit_amount is not None),
            ("scheduling_data", bool(request.scheduling_data)),
        ]
        if given
    ]
    if extraneous:
        raise InvalidInputError(
            f"A gift card is described by `service_data` alone; leave out {', '.join(extraneous)}.",
            field=extraneous[0],
        )
    data = request.service_data
    unknown = sorted(set(data) - set(SERVICE_DATA_FIELDS))
    if unknown:
        raise InvalidInputError(
            f"A gift card's `service_data` takes {', '.join(SERVICE_DATA_FIELDS)}; "
            f"not {', '.join(unknown)}.",
            field="service_data",
            unknown=unknown,
        )
    rules = gift_card_rules()
    value = _value_check(data.get("value"), rules)
    recipient_name, message = _text(data, "recipient_name"), _text(data, "message")
    return Quote(
        amount=value,
        currency=rules.currency,
        description=f"Gift card, {rules.display(value)}",
        # Only what staff need to recognise the order in Stripe's dashboard: the
        # recipient and the message stay in our database.
        metadata={
            "service_type": PURCHASE_TYPE,
            "service_name": "Gift card",
            "gift_card_value": str(value),
        },
        data={"value": value, "recipient_name": recipient_name, "message": message},
    )


@hookimpl
def tollgate_fulfil(order: OrderInfo) -> dict[str, Any]:
    card = gift_card_issue(
        order_id=order.order_id,
        purchaser_id=order.user_id,
        value=order.amount,
        currency=order.currency,
        recipient_name=order.data.get("recipient_name", ""),
        message=order.data.get("message", ""),
    )
    # The code is a bearer secret: billing's fulfilment record keeps its last four only.
    return {"gift_card_id": card.pk, "code_last4": card.code[-4:], "value": card.value}


@hookimpl
def tollgate_delivered(order: OrderInfo, fulfilment: dict[str, Any] | None) -> list[DeliveryLine]:
    """The card's code for its buyer, who alone reads their order."""
    card = GiftCard.objects.filter(order_id=order.order_id).first()
    if card is None:
        return []
    return [
        DeliveryLine("Gift card code", card.code),
        DeliveryLine("Value", gift_card_rules().display(card.value)),
        DeliveryLine("Status", card.get_status_display()),
    ]


@hookimpl
def tollgate_refund(order: OrderInfo, refund: RefundInfo) -> dict[str, Any]:
    return gift_card_refund_apply(order_id=order.order_id, refunded_total=refund.refunded_total)
