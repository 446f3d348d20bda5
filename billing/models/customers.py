"""Stripe customers and the cards users saved with them.

The rule: a user has at most one Stripe customer and at most one default card,
both enforced by the database; the local rows mirror Stripe and are brought back
in step by the card services and by Stripe's events, never edited by hand.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class StripeCustomer(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="stripe_customer"
    )
    stripe_customer_id = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.stripe_customer_id


class SavedPaymentMethod(models.Model):
    """A card attached to the user's Stripe customer."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="saved_payment_methods"
    )
    stripe_payment_method_id = models.CharField(max_length=255, unique=True)
    card_brand = models.CharField(max_length=30, blank=True)
    last4 = models.CharField(max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(null=True, blank=True)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user"],
                condition=models.Q(is_default=True),
                name="one_default_payment_method_per_user",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.card_brand} •••• {self.last4}"


class CardSetup(models.Model):
    """A SetupIntent we made for a user to add a card; its card is saved once it succeeds."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="card_setups"
    )
    stripe_setup_intent_id = models.CharField(max_length=255, unique=True)
    status = models.CharField(max_length=40)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["user"],
                condition=models.Q(completed_at__isnull=True),
                name="card_setup_open_idx",
            )
        ]

    def __str__(self) -> str:
        return self.stripe_setup_intent_id
