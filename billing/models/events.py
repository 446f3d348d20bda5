"""The journal of Stripe events: every verified delivery, stored before it is answered.

The rule: a row is never edited by hand; its status moves only through
`billing.services.events`, which counts every attempt before running it.
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class StripeEvent(models.Model):
    """Every verified Stripe webhook delivery, stored before it is answered."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        PROCESSING = "processing", "Processing"
        RETRYING = "retrying", "Retrying"
        PROCESSED = "processed", "Processed"
        IGNORED = "ignored", "Ignored"
        FAILED = "failed", "Failed"
        # About another system's object on the same Stripe account (no marker of
        # this deployment, a customer we do not know): final at once, never retried.
        NOT_OURS = "not_ours", "Another system's"

    stripe_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    api_version = models.CharField(max_length=50, blank=True)
    object_id = models.CharField(max_length=255, blank=True, db_index=True)
    livemode = models.BooleanField(default=False)
    stripe_created = models.DateTimeField(null=True, blank=True)
    payload = models.JSONField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    # Due for (another) attempt at; a processing event whose lease ran out is
    # taken again (its worker died).
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=models.Q(status__in=["pending", "retrying"]),
                name="stripe_event_due_idx",
            ),
            models.Index(
                fields=["lease_expires_at"],
                condition=models.Q(status="processing"),
                name="stripe_event_lease_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.stripe_id}"


class QueuedDrain(models.Model):
    """An event-drain task that is queued and has not started yet.

    Events stored while it is open ride on it instead of each enqueuing a task
    of their own, holding this row `FOR KEY SHARE` until they commit. Its task
    first closes it (no new riders) and then deletes it: the delete waits for
    the riders that came before, so each of their events is committed before the
    drain looks. See `billing.services.events`.
    """

    created_at = models.DateTimeField(db_default=Now())
    # Riders take it until then (the database's clock); NULL once its task has started.
    open_until = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"queued drain {self.pk}"
