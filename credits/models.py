"""Credit accounts, their ledger, and the lots the credits sit in.

The rule: a balance changes only through `credits.services`, which appends one
immutable `CreditTransaction` and updates `CreditAccount.balance` in the same
transaction under the account's row lock, so balance = sum of the ledger always.
Frozen credits (`CreditFreeze`) stay in the balance; only what spending may take
changes.

Every credit that comes in is a `CreditLot` (its category, its expiry, what is
left of it); every entry that takes credits out or gives them back records per
lot how many in `CreditDraw` rows. Under the same lock the lots are kept so that
the sum of what is left of them equals the balance, or zero while the balance is
negative (a debt, which credits coming in repay first).

`Plan` is the subscription purchase type's catalog, as `CreditPack` is the
credit-pack purchase type's: its price lives at Stripe (`stripe_price_id`, a
`price_…` or a legacy `plan_…`); `amount` and `currency` here must match it
and are what the catalog shows. Credits are granted per paid invoice, never per
plan change.
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
    # Credits held by open `CreditFreeze`s (a disputed purchase): part of the
    # balance, but no spend or adjustment may take them. Kept equal to the sum
    # of the account's unreleased freezes, under the same row lock.
    frozen = models.BigIntegerField(default=0, db_default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(frozen__gte=0), name="credit_account_frozen_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} ({self.balance} credits)"

    @property
    def available(self) -> int:
        """What a spend may take: the balance less the frozen credits (never below zero)."""
        return max(0, self.balance - self.frozen)


class CreditTransaction(models.Model):
    class Kind(models.TextChoices):
        PURCHASE = "purchase", "Purchase"
        SPEND = "spend", "Spend"
        GRANT = "grant", "Grant"
        ADJUSTMENT = "adjustment", "Adjustment"
        REFUND = "refund", "Refund"
        SUBSCRIPTION = "subscription", "Subscription cycle"
        RETURN = "return", "Spend returned"
        EXPIRY = "expiry", "Expiry"

    # Indexed by `credit_txn_reference_unique`, which leads with it.
    account = models.ForeignKey(
        CreditAccount, on_delete=models.PROTECT, related_name="entries", db_index=False
    )
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
        db_index=False,
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # A return entry: the spend whose credits it gives back.
    returns = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="returned_by",
        db_index=False,
    )

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "reference"], name="credit_txn_reference_unique"
            ),
            models.CheckConstraint(condition=~models.Q(amount=0), name="credit_txn_nonzero"),
        ]
        # Only the few entries that have a staff author or a spend they return are
        # indexed by them: a client's spend, the busiest write, adds no entry to either.
        indexes = [
            models.Index(
                fields=["created_by"],
                condition=models.Q(created_by__isnull=False),
                name="credit_txn_by_staff",
            ),
            models.Index(
                fields=["returns"],
                condition=models.Q(returns__isnull=False),
                name="credit_txn_returns",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount:+d} {self.kind} ({self.reference})"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise ValueError("Ledger entries are immutable; append a correcting entry instead.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("Ledger entries are immutable; append a correcting entry instead.")


class CreditLot(models.Model):
    """Credits that came in together: a purchase, a subscription cycle, a grant, a refund.

    `amount` is what the entry brought in; `remaining` what is left of it to
    spend (less than `amount` from the start when the entry first repaid a
    debt). `cost_basis` is what was paid for the whole lot, in minor units of
    `currency`, when it was bought; `remaining * cost_basis / amount` is then
    revenue not yet earned.
    """

    class Category(models.TextChoices):
        PAID = "paid", "Paid"
        PROMOTIONAL = "promotional", "Promotional"

    class Source(models.TextChoices):
        PURCHASE = "purchase", "Purchase"
        SUBSCRIPTION = "subscription", "Subscription cycle"
        STAFF = "staff", "Staff grant"
        REFUND = "refund", "Refund to credits"
        GRANT = "grant", "Grant"
        OPENING = "opening", "Balance before lots"

    # Indexed by `credit_lot_by_account` below.
    account = models.ForeignKey(
        CreditAccount, on_delete=models.PROTECT, related_name="lots", db_index=False
    )
    # The entry that brought the credits in; none for an opening lot.
    entry = models.OneToOneField(
        CreditTransaction, null=True, blank=True, on_delete=models.PROTECT, related_name="lot"
    )
    source = models.CharField(max_length=20, choices=Source.choices)
    source_order_id = models.BigIntegerField(null=True, blank=True)
    # The subscription plan whose cycle granted the lot (its roll-over cap applies).
    plan = models.ForeignKey(
        "Plan",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # looked up within an account's lots
    )
    category = models.CharField(max_length=20, choices=Category.choices)
    expires_at = models.DateTimeField(null=True, blank=True)
    amount = models.BigIntegerField()
    remaining = models.BigIntegerField()
    cost_basis = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="credit_lot_amount"),
            models.CheckConstraint(
                condition=models.Q(remaining__gte=0) & models.Q(remaining__lte=models.F("amount")),
                name="credit_lot_remaining_within_amount",
            ),
            models.CheckConstraint(
                condition=models.Q(cost_basis__isnull=True) | models.Q(cost_basis__gte=0),
                name="credit_lot_cost_basis",
            ),
        ]
        # No index names `remaining`, not even in a condition: a spend's update of
        # it then stays a heap-only update that writes no index entry.
        indexes = [
            # What a spend draws from: the account's lots.
            models.Index(fields=["account", "expires_at", "id"], name="credit_lot_by_account"),
            # What the expiry sweep looks for.
            models.Index(
                fields=["expires_at"],
                condition=models.Q(expires_at__isnull=False),
                name="credit_lot_expiring",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.remaining}/{self.amount} {self.category} credits ({self.source})"


class CreditDraw(models.Model):
    """How many credits one entry took from (amount > 0) or gave back to (< 0) one lot."""

    entry = models.ForeignKey(CreditTransaction, on_delete=models.PROTECT, related_name="draws")
    lot = models.ForeignKey(CreditLot, on_delete=models.PROTECT, related_name="draws")
    amount = models.BigIntegerField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(amount=0), name="credit_draw_nonzero"),
        ]

    def __str__(self) -> str:
        return f"{self.amount:+d} from lot {self.lot_id}"


class CreditFreeze(models.Model):
    """Credits held on an account so they cannot be spent (a purchase under dispute).

    A freeze writes nothing to the ledger: the balance stays the ledger's sum,
    and `CreditAccount.frozen` is what spending must leave alone. It holds at
    most what was available when it was made; releasing it is done once.
    """

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="freezes")
    # Makes a freeze idempotent: one freeze per reference on an account.
    reference = models.CharField(max_length=120)
    # What was asked, and what was available to hold (amount <= requested).
    requested = models.BigIntegerField()
    amount = models.BigIntegerField()
    memo = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    released_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "reference"], name="credit_freeze_reference_unique"
            ),
            models.CheckConstraint(
                condition=models.Q(amount__gte=0) & models.Q(amount__lte=models.F("requested")),
                name="credit_freeze_amount_within_request",
            ),
        ]

    def __str__(self) -> str:
        state = "released" if self.released_at else "held"
        return f"{self.amount} credits frozen ({self.reference}, {state})"


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


class Plan(models.Model):
    """A subscription plan: a Stripe price billed each cycle, granting credits per paid invoice."""

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

    class UnusedCredits(models.TextChoices):
        ROLLOVER = "rollover", "Roll over to the next cycle"
        EXPIRE = "expire", "Expire at the end of the cycle"

    # What becomes of a cycle's credits left unspent when its period ends.
    unused_credits = models.CharField(
        max_length=10,
        choices=UnusedCredits.choices,
        default=UnusedCredits.ROLLOVER,
        db_default=UnusedCredits.ROLLOVER,
    )
    rollover_cap = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="With roll-over: at most this many credits of the plan's earlier cycles "
        "carry into a new cycle; the rest expire when it starts. Empty for no cap.",
    )
    active = models.BooleanField(default=True)
    sort_order = models.PositiveSmallIntegerField(default=0)

    class Meta:
        # The table keeps the name it had when plans lived in `purchasables`.
        db_table = "purchasables_plan"
        ordering = ["sort_order", "id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="plan_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(credits_per_cycle__gt=0), name="plan_credits_positive"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.credits_per_cycle} credits / {self.interval})"
