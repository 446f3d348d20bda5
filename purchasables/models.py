"""Models of the built-in purchase types: subscription plans.

The rule: a plan's price lives at Stripe (`stripe_price_id`, a `price_…` or a
legacy `plan_…`); `amount` and `currency` here must match it and are what the
catalog shows. Credits are granted per paid invoice, never per plan change.
"""

from __future__ import annotations

from django.db import models


class Plan(models.Model):
    class Interval(models.TextChoices):
        DAY = "day", "Daily"
        WEEK = "week", "Weekly"
        MONTH = "month", "Monthly"
        YEAR = "year", "Yearly"

    name = models.CharField(max_length=100)
    stripe_price_id = models.CharField(max_length=255, unique=True)
    amount = models.PositiveBigIntegerField(help_text="Per cycle, in the currency's minor unit.")
    currency = models.CharField(max_length=3, default="usd")
    interval = models.CharField(max_length=10, choices=Interval.choices, default=Interval.MONTH)
    interval_count = models.PositiveSmallIntegerField(default=1)
    credits_per_cycle = models.PositiveIntegerField()
    active = models.BooleanField(default=True)
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="plan_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(credits_per_cycle__gt=0), name="plan_credits_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.credits_per_cycle} credits / {self.interval})"
