"""Disputes (chargebacks and inquiries) of our payments, as Stripe reports them.

The rule: a dispute's status moves only forward in Stripe's time (the
`created` of the newest event applied) and never leaves a closed status; each
effect on the order's plugin (freeze, release, reversal) happens once, marked
by its own timestamp, under the order's row lock.
"""

from __future__ import annotations

from django.db import models


class Dispute(models.Model):
    """One Stripe dispute (`dp_…`), and what it did to the order it disputes."""

    class Outcome(models.TextChoices):
        OPEN = "open", "Open"
        WON = "won", "Won"
        LOST = "lost", "Lost"
        # An inquiry closed, or a dispute prevented: nothing was lost.
        CLOSED = "closed", "Closed"
        # Another system's payment on the same Stripe account: recorded, never acted on.
        NOT_OURS = "not_ours", "Not ours"

    stripe_dispute_id = models.CharField(max_length=255, unique=True)
    order = models.ForeignKey(
        "billing.Order", null=True, blank=True, on_delete=models.PROTECT, related_name="disputes"
    )
    payment = models.ForeignKey(
        "billing.Payment",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="disputes",
    )
    stripe_charge_id = models.CharField(max_length=255, blank=True)
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True)
    amount = models.BigIntegerField(help_text="In the currency's minor unit.")
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=100, blank=True)
    # Stripe's own status (needs_response, under_review, won, lost, …).
    status = models.CharField(max_length=40)
    outcome = models.CharField(max_length=20, choices=Outcome.choices, default=Outcome.OPEN)
    evidence_due_by = models.DateTimeField(null=True, blank=True)
    # When Stripe opened it, and when we first saw it closed.
    opened_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # `created` of the newest Stripe event applied: older news moves nothing.
    stripe_event_at = models.BigIntegerField(null=True, blank=True)
    # Each effect on the plugin, once: the freeze while open, its release, the reversal.
    frozen_at = models.DateTimeField(null=True, blank=True)
    released_at = models.DateTimeField(null=True, blank=True)
    reversed_at = models.DateTimeField(null=True, blank=True)
    # The reversal of a lost dispute, applied like a refund (none when nothing was left).
    refund = models.OneToOneField(
        "billing.Refund", null=True, blank=True, on_delete=models.PROTECT, related_name="dispute"
    )
    # What the plugin answered, per state (`open`, `won`, `lost`).
    result = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["outcome"],
                condition=models.Q(outcome="open"),
                name="dispute_open_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gte=0), name="dispute_amount_not_negative"
            ),
            models.CheckConstraint(
                condition=models.Q(order__isnull=False) | models.Q(outcome="not_ours"),
                name="dispute_has_order_unless_not_ours",
            ),
        ]

    def __str__(self) -> str:
        return f"Dispute {self.stripe_dispute_id} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.outcome == self.Outcome.OPEN
