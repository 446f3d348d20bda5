"""Orders, their Stripe payments, fulfilments and refunds.

The rule: an order's status moves only forward along `ORDER_TRANSITIONS`, under
the order's row lock, and the move to `paid` inserts the order's one
`Fulfilment` in the same transaction, so a paid order is fulfilled exactly once.

A dispute does not give an order a status of its own: while it is open the
order stays `paid` (the `Dispute` row says it is disputed, and the plugin has
frozen what it delivered); a lost dispute is applied as a refund (source
`dispute`), so the order moves forward to `refunded` or `partially_refunded`;
a won one leaves it `paid`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Order(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        REQUIRES_ACTION = "requires_action", "Requires action"
        PROCESSING = "processing", "Processing"
        FAILED = "failed", "Failed"
        PAID = "paid", "Paid"
        CANCELED = "canceled", "Canceled"
        PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
        REFUNDED = "refunded", "Refunded"

    class OrderType(models.TextChoices):
        CREDIT = "credit", "Credit"
        DIRECT = "direct", "Direct"
        SUBSCRIPTION = "subscription", "Subscription"

    class PaymentType(models.TextChoices):
        INTENT = "intent", "PaymentIntent"
        CHECKOUT = "checkout", "Checkout Session"
        # Paid from the buyer's credit ledger when it was created; no Stripe object.
        CREDITS = "credits", "Credits"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="orders"
    )
    purchase_type = models.CharField(max_length=50)
    order_type = models.CharField(max_length=20, choices=OrderType.choices)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True
    )
    # The whole price, whatever pays it: the card pays `card_amount`, the rest
    # (`credits_value`) is paid with `credits` credits.
    amount = models.BigIntegerField(help_text="In the currency's Stripe minor unit.")
    currency = models.CharField(max_length=3)
    # The quote's price in credits, for the whole order (None: not sold for credits).
    credit_price = models.BigIntegerField(null=True, blank=True)
    # Credits taken from the buyer's ledger when the order was created, and the
    # part of `amount` they pay. Taken under `credits_reference`, which only the
    # server knows, so no client spend can take its place.
    credits = models.BigIntegerField(default=0)
    credits_value = models.BigIntegerField(default=0)
    credits_reference = models.CharField(max_length=64, blank=True)
    # Until when the buyer may cancel it themselves once paid in full with credits.
    cancellable_until = models.DateTimeField(null=True, blank=True)
    description = models.CharField(max_length=255)
    payment_type = models.CharField(
        max_length=10, choices=PaymentType.choices, default=PaymentType.INTENT
    )
    # The unified metadata, exactly as sent on every Stripe object for this order.
    metadata = models.JSONField(default=dict)
    # What the owning plugin asked to keep for fulfilment.
    data = models.JSONField(default=dict)
    # NULL, not "", for no key: the unique constraint below covers only real keys.
    # For `payment_type=checkout`: the Checkout Session and its page.
    stripe_checkout_session_id = models.CharField(
        max_length=255, unique=True, null=True, blank=True
    )
    checkout_url = models.CharField(max_length=2000, blank=True)
    # For a subscription cycle: the paid Stripe invoice it stands for (one order each).
    stripe_invoice_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    subscription = models.ForeignKey(
        "billing.Subscription",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="orders",
    )
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    request_fingerprint = models.CharField(max_length=64, blank=True)
    failure_code = models.CharField(max_length=100, blank=True)
    failure_message = models.CharField(max_length=500, blank=True)
    # The last error from Stripe while creating the payment, for staff.
    gateway_error = models.CharField(max_length=500, blank=True)
    # How many times the customer asked to pay this order again (another card after a
    # decline, a failed 3-D Secure check, or none at first); each attempt's Stripe
    # writes carry it in their idempotency keys.
    pay_attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="order_idempotency_key_unique",
            ),
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="order_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(credits__gte=0)
                & models.Q(credits_value__gte=0)
                & models.Q(credits_value__lte=models.F("amount")),
                name="order_credits_within_amount",
            ),
        ]

    def __str__(self) -> str:
        return f"Order {self.pk} ({self.status})"

    @property
    def card_amount(self) -> int:
        """What a card pays of the order: its price less what credits paid."""
        return self.amount - self.credits_value


S = Order.Status
# Where each status may go next. Anything else is stale or out of order and is
# ignored, so a `payment_failed` that arrives after `succeeded` changes nothing.
# `failed` is not final: the customer may retry the same PaymentIntent, or pay the
# order again (`order_pay`), which moves it back to `pending` for the new attempt.
ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.REQUIRES_ACTION, S.PROCESSING, S.FAILED, S.PAID, S.CANCELED}),
    S.REQUIRES_ACTION: frozenset({S.PROCESSING, S.FAILED, S.PAID, S.CANCELED}),
    S.PROCESSING: frozenset({S.REQUIRES_ACTION, S.FAILED, S.PAID, S.CANCELED}),
    S.FAILED: frozenset({S.PENDING, S.REQUIRES_ACTION, S.PROCESSING, S.PAID, S.CANCELED}),
    S.PAID: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.REFUNDED}),
    S.CANCELED: frozenset(),
    S.REFUNDED: frozenset(),
}
UNPAID_STATUSES = frozenset({S.PENDING, S.REQUIRES_ACTION, S.PROCESSING, S.FAILED})


class Payment(models.Model):
    """One Stripe PaymentIntent made for an order."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="payments")
    stripe_payment_intent_id = models.CharField(max_length=255, unique=True)
    # Stripe's own PaymentIntent status (requires_payment_method, succeeded, …).
    status = models.CharField(max_length=40)
    amount = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    amount_received = models.BigIntegerField(default=0)
    stripe_charge_id = models.CharField(max_length=255, blank=True)
    client_secret = models.CharField(max_length=255, blank=True)
    # `created` of the newest Stripe event applied: older news moves nothing.
    stripe_event_at = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.stripe_payment_intent_id


class Fulfilment(models.Model):
    """Proof that an order's plugin delivered it. One per order, by the database."""

    order = models.OneToOneField(Order, on_delete=models.PROTECT, related_name="fulfilment")
    result = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"Fulfilment of order {self.order_id}"


class Refund(models.Model):
    """One refund of an order, applied to the plugin exactly once: a Stripe refund of a
    card payment, or a refund in credits (`method`).

    A refund we start is stored (pending, no Stripe id) before Stripe is asked,
    and carries our id in Stripe's metadata, so its webhook finds this row
    rather than making a second one. Refunds made in Stripe's dashboard arrive
    by webhook and are stored by their `re_…` id.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        REQUIRES_ACTION = "requires_action", "Requires action"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"

    class Source(models.TextChoices):
        STAFF = "staff", "Staff"
        STRIPE = "stripe", "Stripe dashboard"
        AUTOMATIC = "automatic", "Automatic"
        # A lost dispute: the customer's bank took the money back. No Stripe
        # refund exists (no `re_…` id); the row makes the reversal count
        # against what is left to refund, like any refund.
        DISPUTE = "dispute", "Lost dispute"
        # The buyer cancelled an order they paid with credits, before its cut-off.
        CUSTOMER = "customer", "Customer's cancellation"

    class Method(models.TextChoices):
        CARD = "card", "To the card"
        # The credits the order was paid with, given back to the buyer's ledger.
        CREDITS = "credits", "Credits given back"
        # Card money refunded as new credits instead of to the card (staff, or the
        # buyer's own cancellation): no Stripe refund; counts against the card payment.
        AS_CREDITS = "as_credits", "Card payment refunded as credits"

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="refunds")
    # The card payment refunded; None for credits given back.
    payment = models.ForeignKey(
        Payment, null=True, blank=True, on_delete=models.PROTECT, related_name="refunds"
    )
    method = models.CharField(max_length=20, choices=Method.choices, default=Method.CARD)
    # Credits this refund gives the buyer (0 for a refund to the card).
    credits = models.BigIntegerField(default=0)
    # NULL until Stripe answers; unique once it has.
    stripe_refund_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    # For a refund in credits, the part of the order's price they stand for.
    amount = models.BigIntegerField(help_text="In the currency's minor unit.")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    source = models.CharField(max_length=20, choices=Source.choices)
    reason = models.CharField(max_length=500, blank=True)
    initiated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    failure_reason = models.CharField(max_length=500, blank=True)
    # Set, and committed, before the first request to Stripe: a row without a
    # Stripe id but with this set may exist at Stripe and is looked up there
    # before it is ever sent again.
    submitted_at = models.DateTimeField(null=True, blank=True)
    # False for a refund of a payment the order did not need (a second payment,
    # or one that arrived after the order was canceled): the plugin keeps what
    # it delivered and the order keeps its status.
    reverses_order = models.BooleanField(default=True)
    # When the owning plugin reversed this refund's effect; set once, never cleared.
    applied_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # A refund in credits may be worth less than one minor unit.
            models.CheckConstraint(
                condition=models.Q(amount__gt=0) | models.Q(amount=0, credits__gt=0),
                name="refund_amount_positive",
            ),
            models.CheckConstraint(
                condition=models.Q(payment__isnull=False) | ~models.Q(method="card"),
                name="refund_card_has_payment",
            ),
        ]

    def __str__(self) -> str:
        return f"Refund {self.stripe_refund_id or self.pk} of order {self.order_id}"
