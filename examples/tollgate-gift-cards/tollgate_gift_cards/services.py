"""Issuing, redeeming and refunding gift cards.

The rule: every write here is safe to repeat. Issuing is keyed by the order (a
second call returns the first card), and a refund sets the card's value from the
order's refunded total instead of subtracting, so applying one twice changes
nothing.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from kernel.errors import ConflictError, NotFoundError
from tollgate_gift_cards.models import GiftCard

# No 0/O or 1/I: codes are read aloud and typed by hand. 16 characters of 32
# symbols are 80 bits, far beyond guessing.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 16
CODE_ATTEMPTS = 5


class GiftCardNotFoundError(NotFoundError):
    pass


class GiftCardUnavailableError(ConflictError):
    """The card exists but cannot be redeemed: it was redeemed already or voided."""


def code_new() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    return "-".join(raw[i : i + 4] for i in range(0, CODE_LENGTH, 4))


def code_normalise(code: str) -> str:
    raw = "".join(ch for ch in code.upper() if ch.isalnum())
    return "-".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def gift_card_issue(
    *,
    order_id: int,
    purchaser_id: int,
    value: int,
    currency: str,
    recipient_name: str = "",
    message: str = "",
) -> GiftCard:
    """The order's gift card, issued now with a fresh code unless it already exists."""
    existing = GiftCard.objects.filter(order_id=order_id).first()
    if existing is not None:
        return existing
    for _ in range(CODE_ATTEMPTS):
        try:
            # A savepoint, so a clash on the code leaves the caller's transaction usable.
            with transaction.atomic():
                return GiftCard.objects.create(
                    order_id=order_id,
                    purchaser_id=purchaser_id,
                    code=code_new(),
                    currency=currency,
                    face_value=value,
                    value=value,
                    recipient_name=recipient_name,
                    message=message,
                )
        except IntegrityError:
            existing = GiftCard.objects.filter(order_id=order_id).first()
            if existing is not None:
                return existing
    raise RuntimeError(f"No unused gift-card code found in {CODE_ATTEMPTS} draws.")


def gift_card_redeem(*, code: str, user_id: int) -> GiftCard:
    """Spend an active card whole. What it buys (credits, a discount) is the shop's business."""
    with transaction.atomic():
        card = GiftCard.objects.select_for_update().filter(code=code_normalise(code)).first()
        if card is None:
            raise GiftCardNotFoundError("No gift card has this code.")
        if card.status != GiftCard.Status.ACTIVE:
            raise GiftCardUnavailableError(
                f"This gift card cannot be redeemed: it is {card.status}.", status=card.status
            )
        card.status = GiftCard.Status.REDEEMED
        card.redeemed_by_id = user_id
        card.redeemed_at = timezone.now()
        card.save(update_fields=["status", "redeemed_by", "redeemed_at", "updated_at"])
    return card


def gift_card_refund_apply(*, order_id: int, refunded_total: int) -> dict[str, Any]:
    """Take back what the order's refunds returned: lower the card, void it at zero.

    `refunded_total` is every refund of the order so far. A card already redeemed
    is left as it is (the money went back, the card was spent: staff decide), and
    the summary says so.
    """
    with transaction.atomic():
        card = GiftCard.objects.select_for_update().filter(order_id=order_id).first()
        if card is None:
            return {"gift_card_id": None, "reversed": False, "reason": "no gift card was issued"}
        if card.status == GiftCard.Status.REDEEMED:
            return {
                "gift_card_id": card.pk,
                "reversed": False,
                "reason": "the gift card was already redeemed",
                "status": card.status,
            }
        value = min(card.value, max(card.face_value - refunded_total, 0))
        fields = ["value", "updated_at"]
        card.value = value
        if value == 0 and card.status == GiftCard.Status.ACTIVE:
            card.status = GiftCard.Status.VOID
            card.voided_at = timezone.now()
            fields += ["status", "voided_at"]
        card.save(update_fields=fields)
    return {"gift_card_id": card.pk, "reversed": True, "status": card.status, "value": card.value}
