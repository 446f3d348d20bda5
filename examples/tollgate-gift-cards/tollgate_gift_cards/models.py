"""The gift cards issued for paid orders.

The rule: one card per order, enforced by the database (`order_id` is unique),
and a card's value only ever goes down: refunds lower it, redemption spends it,
nothing raises it again.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class GiftCard(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        REDEEMED = "redeemed", "Redeemed"
        VOID = "void", "Void"

    # Tollgate's order id as a plain integer, not a foreign key: a plugin never
    # imports billing, and billing's orders are never deleted.
    order_id = models.BigIntegerField(unique=True)
    purchaser = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    code = models.CharField(max_length=19, unique=True)
    currency = models.CharField(max_length=3)
    face_value = models.PositiveBigIntegerField(help_text="What was paid, in minor units.")
    value = models.PositiveBigIntegerField(
        help_text="What the card is worth now: the face value less refunds, in minor units."
    )
    recipient_name = models.CharField(max_length=100, blank=True)
    message = models.CharField(max_length=500, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    redeemed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    redeemed_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(value__lte=models.F("face_value")),
                name="gift_card_value_within_face_value",
            ),
        ]

    def __str__(self) -> str:
        return f"Gift card …{self.code[-4:]} ({self.status})"
