"""Credit accounts and their ledger.

The rule: a balance changes only through `credits.services`, which appends one
immutable `CreditTransaction` and updates `CreditAccount.balance` in the same
transaction under the account's row lock, so balance = sum of the ledger always.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class CreditAccount(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="credit_account"
    )
    # Kept equal to the sum of the ledger; may go below zero only through a
    # refund debit (a debt that blocks spending).
    balance = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.balance} credits)"


class CreditTransaction(models.Model):
    class Kind(models.TextChoices):
        PURCHASE = "purchase", "Purchase"
        SPEND = "spend", "Spend"
        GRANT = "grant", "Grant"
        ADJUSTMENT = "adjustment", "Adjustment"
        REFUND = "refund", "Refund"
        SUBSCRIPTION = "subscription", "Subscription cycle"

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="entries")
    amount = models.BigIntegerField()  # signed: credits in > 0, credits out < 0
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Makes a write idempotent: the same reference on one account is one entry.
    reference = models.CharField(max_length=120)
    balance_after = models.BigIntegerField()
    memo = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "reference"], name="credit_txn_reference_unique"
            ),
            models.CheckConstraint(condition=~models.Q(amount=0), name="credit_txn_nonzero"),
        ]

    def __str__(self) -> str:
        return f"{self.amount:+d} {self.kind} ({self.reference})"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValueError("Ledger entries are immutable; append a correcting entry instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Ledger entries are immutable; append a correcting entry instead.")


class CreditPack(models.Model):
    """A fixed bundle of credits sold at a fixed price."""

    name = models.CharField(max_length=100)
    credits = models.PositiveIntegerField()
    price = models.PositiveBigIntegerField(help_text="In the currency's minor unit.")
    currency = models.CharField(max_length=3, default="usd")
    active = models.BooleanField(default=True)
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["sort_order", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(credits__gt=0), name="credit_pack_credits"),
            models.CheckConstraint(condition=models.Q(price__gt=0), name="credit_pack_price"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.credits} credits)"
