"""Local records of Stripe subscriptions.

The rule: a record is keyed by its Stripe id and moved only by what Stripe says,
newest first: an event older than the last one applied changes nothing, and a
canceled subscription never comes back, whatever order events arrive in.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Subscription(models.Model):
    class Status(models.TextChoices):
        INCOMPLETE = "incomplete", "Incomplete"
        INCOMPLETE_EXPIRED = "incomplete_expired", "Incomplete, expired"
        TRIALING = "trialing", "Trialing"
        ACTIVE = "active", "Active"
        PAST_DUE = "past_due", "Past due"
        UNPAID = "unpaid", "Unpaid"
        PAUSED = "paused", "Paused"
        CANCELED = "canceled", "Canceled"

    LIVE_STATUSES = (Status.INCOMPLETE, Status.TRIALING, Status.ACTIVE, Status.PAST_DUE)

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="subscriptions"
    )
    purchase_type = models.CharField(max_length=50)
    # The plan as the owning plugin names it (its `plan_id`), and what it was called.
    plan_ref = models.CharField(max_length=100)
    plan_name = models.CharField(max_length=255, blank=True)
    # NULL until Stripe answers; unique once it has.
    stripe_subscription_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    stripe_price_id = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.INCOMPLETE)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    canceled_at = models.DateTimeField(null=True, blank=True)
    # When Stripe produced the newest state applied here (an event's `created`).
    stripe_updated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # One live subscription per user and plan. The row is inserted (in
            # `incomplete`) before Stripe is asked, so a second simultaneous start
            # is refused here and never reaches Stripe. Subscriptions started
            # outside Tollgate on a price no plan names (`plan_ref` "") are
            # recorded however many there are.
            models.UniqueConstraint(
                fields=["user", "purchase_type", "plan_ref"],
                condition=models.Q(status__in=["incomplete", "trialing", "active", "past_due"])
                & ~models.Q(plan_ref=""),
                name="subscription_one_live_per_plan",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan_name or self.plan_ref} ({self.status})"
