"""Stripe customers and saved cards.

The rule: Stripe is the truth and these rows its mirror. A user's first
customer is made under the user's row lock (two concurrent first purchases make
one customer, even against a Stripe fake that ignores idempotency keys); a card
is saved once Stripe has it attached to that customer; and a card id a client
sends is checked against the cards we know, so nobody pays with another
user's card. What a user can make Stripe do is bounded: an open SetupIntent is
handed out again rather than a new one made, and a card list asks Stripe about
at most `SETUPS_READ_PER_LIST` unfinished setups, each settled one marked here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing import gateway, sql
from billing.metadata import metadata_marker
from billing.models import CardSetup, SavedPaymentMethod, StripeCustomer
from billing.stripe_objects import PaymentMethodData, SetupIntentData
from kernel.errors import NotFoundError

log = logging.getLogger(__name__)

# A setup left unfinished this long is abandoned: Stripe is not asked about it again.
SETUP_ABANDONED_AFTER = timedelta(days=1)
# An open setup is handed out again for this long, instead of a new one.
SETUP_REUSED_FOR = timedelta(hours=12)
# The open setups a card list asks Stripe about, newest first; older ones are abandoned.
SETUPS_READ_PER_LIST = 3
SETTLED_SETUP_STATUSES = frozenset({"succeeded", "canceled"})


def stripe_customer_get_or_create(*, user_id: int) -> str:
    """The user's Stripe customer id, made at Stripe on first need."""
    existing = StripeCustomer.objects.filter(user_id=user_id).first()
    if existing is not None:
        return existing.stripe_customer_id
    with transaction.atomic():
        sql.stripe_customer_creation_lock(user_id=user_id)
        user = get_user_model().objects.get(pk=user_id)
        existing = StripeCustomer.objects.filter(user_id=user_id).first()
        if existing is not None:
            return existing.stripe_customer_id
        customer = gateway.customer_create(
            email=user.email,
            name=user.get_username(),
            metadata={"user_id": str(user_id), **metadata_marker()},
            idempotency_key=f"user-{user_id}-customer",
        )
        StripeCustomer.objects.create(user_id=user_id, stripe_customer_id=customer.id)
        return customer.id


def card_setup_start(*, user_id: int) -> SetupIntentData:
    """A SetupIntent whose client secret lets the browser add a card (Stripe.js).

    The user's newest open setup is handed out again while Stripe still waits for
    its card, so asking again and again makes no new SetupIntents; one that has
    moved on (its card given, or canceled) is settled here and a new one made.
    """
    customer_id = stripe_customer_get_or_create(user_id=user_id)
    newest = (
        _open_setups(user_id)
        .filter(created_at__gte=timezone.now() - SETUP_REUSED_FOR)
        .order_by("-id")
        .first()
    )
    if newest is not None:
        intent = gateway.setup_intent_retrieve(setup_intent_id=newest.stripe_setup_intent_id)
        if intent.status == "requires_payment_method" and intent.client_secret:
            return intent
        card_setup_complete(setup=intent)
    number = CardSetup.objects.filter(user_id=user_id).count() + 1
    intent = gateway.setup_intent_create(
        customer_id=customer_id,
        metadata={"user_id": str(user_id), **metadata_marker()},
        idempotency_key=f"user-{user_id}-card-setup-{number}",
    )
    CardSetup.objects.get_or_create(
        stripe_setup_intent_id=intent.id, defaults={"user_id": user_id, "status": intent.status}
    )
    return intent


def _open_setups(user_id: int):
    return CardSetup.objects.filter(user_id=user_id, completed_at__isnull=True)


def _card_upsert(*, user_id: int, method: PaymentMethodData) -> SavedPaymentMethod:
    card, _ = SavedPaymentMethod.objects.update_or_create(
        stripe_payment_method_id=method.id,
        defaults={
            "user_id": user_id,
            "card_brand": method.card_brand,
            "last4": method.last4,
            "exp_month": method.exp_month,
            "exp_year": method.exp_year,
        },
    )
    return card


def _default_mark(*, user_id: int, payment_method_id: str) -> None:
    with transaction.atomic():
        # Lock the user's cards so two changes of default queue instead of
        # colliding on the one-default constraint.
        list(SavedPaymentMethod.objects.select_for_update().filter(user_id=user_id))
        SavedPaymentMethod.objects.filter(user_id=user_id, is_default=True).exclude(
            stripe_payment_method_id=payment_method_id
        ).update(is_default=False)
        SavedPaymentMethod.objects.filter(
            user_id=user_id, stripe_payment_method_id=payment_method_id
        ).update(is_default=True)


def card_setup_complete(*, setup: SetupIntentData) -> SavedPaymentMethod | None:
    """Save the card of a succeeded SetupIntent, attaching it where Stripe has not."""
    customer = StripeCustomer.objects.filter(stripe_customer_id=setup.customer_id).first()
    if customer is None or setup.status != "succeeded" or not setup.payment_method_id:
        if setup.status in SETTLED_SETUP_STATUSES:  # nothing more will happen to it
            CardSetup.objects.filter(
                stripe_setup_intent_id=setup.id, completed_at__isnull=True
            ).update(status=setup.status, completed_at=timezone.now())
        return None
    method = gateway.payment_method_retrieve(payment_method_id=setup.payment_method_id)
    if method.customer_id != customer.stripe_customer_id:
        method = gateway.payment_method_attach(
            payment_method_id=method.id, customer_id=customer.stripe_customer_id
        )
    card = _card_upsert(user_id=customer.user_id, method=method)
    if not SavedPaymentMethod.objects.filter(user_id=customer.user_id, is_default=True).exists():
        _default_mark(user_id=customer.user_id, payment_method_id=method.id)
    CardSetup.objects.filter(stripe_setup_intent_id=setup.id).update(
        status=setup.status, completed_at=timezone.now()
    )
    return card


def _setups_abandon(user_id: int) -> None:
    """Stop asking Stripe about setups nobody will finish: those left for a day, and
    all but the newest `SETUPS_READ_PER_LIST` (a browser uses the newest; Stripe's
    `setup_intent.succeeded` still saves the card of any of them)."""
    now = timezone.now()
    keep = _open_setups(user_id).order_by("-id").values("id")[:SETUPS_READ_PER_LIST]
    _open_setups(user_id).filter(
        Q(created_at__lt=now - SETUP_ABANDONED_AFTER) | ~Q(id__in=keep)
    ).update(status="abandoned", completed_at=now)


def cards_sync(*, user_id: int) -> list[SavedPaymentMethod]:
    """Bring the user's saved cards in step with Stripe and answer them."""
    customer = StripeCustomer.objects.filter(user_id=user_id).first()
    if customer is None:
        return []
    _setups_abandon(user_id)
    for setup_id in _open_setups(user_id).values_list("stripe_setup_intent_id", flat=True):
        card_setup_complete(setup=gateway.setup_intent_retrieve(setup_intent_id=setup_id))
    at_stripe = gateway.payment_methods_list(customer_id=customer.stripe_customer_id)
    for method in at_stripe:
        _card_upsert(user_id=user_id, method=method)
    # Cards we saved from a SetupIntent count even where a Stripe fake does not
    # list them; a card Stripe no longer has attached is forgotten on its
    # `payment_method.detached` event.
    default_id = gateway.customer_retrieve(
        customer_id=customer.stripe_customer_id
    ).default_payment_method_id
    cards = SavedPaymentMethod.objects.filter(user_id=user_id)
    if default_id and cards.filter(stripe_payment_method_id=default_id).exists():
        _default_mark(user_id=user_id, payment_method_id=default_id)
    return list(cards.order_by("id"))


def card_get_for_user(*, user_id: int, card: str | int) -> SavedPaymentMethod:
    """One of the user's saved cards, by our id or its `pm_…` id; 404 for anyone else's."""
    found = SavedPaymentMethod.objects.filter(user_id=user_id)
    found = (
        found.filter(pk=card)
        if isinstance(card, int)
        else found.filter(stripe_payment_method_id=card)
    )
    result = found.first()
    if result is None:
        raise NotFoundError("No such saved card.", payment_method_id=card)
    return result


def card_default_set(*, user_id: int, card: str | int) -> SavedPaymentMethod:
    saved = card_get_for_user(user_id=user_id, card=card)
    customer_id = stripe_customer_get_or_create(user_id=user_id)
    gateway.customer_default_payment_method_set(
        customer_id=customer_id, payment_method_id=saved.stripe_payment_method_id
    )
    _default_mark(user_id=user_id, payment_method_id=saved.stripe_payment_method_id)
    saved.refresh_from_db()
    return saved


def card_delete(*, user_id: int, card_id: int) -> None:
    saved = card_get_for_user(user_id=user_id, card=card_id)
    gateway.payment_method_detach(payment_method_id=saved.stripe_payment_method_id)
    saved.delete()


@dataclass(frozen=True)
class ChargeSource:
    """What to charge: a payment method, its customer for a saved card, and whether to save it."""

    payment_method_id: str | None
    customer_id: str | None = None
    save: bool = False


def charge_source_for(*, user_id: int, payment_method_id: str | None, save: bool) -> ChargeSource:
    """Check the `payment_method_id` a client sent for a payment; no Stripe call.

    One of the user's saved cards is charged with its customer; another user's
    saved card is 404; any other id (a new card, `pm_card_visa`) goes to Stripe
    as it is, saved first when asked (`charge_source_ready`).
    """
    if payment_method_id is None:
        return ChargeSource(None)
    known = SavedPaymentMethod.objects.filter(stripe_payment_method_id=payment_method_id).first()
    if known is not None and known.user_id != user_id:
        raise NotFoundError("No such saved card.", payment_method_id=payment_method_id)
    if known is not None:
        customer = StripeCustomer.objects.filter(user_id=user_id).first()
        return ChargeSource(payment_method_id, customer.stripe_customer_id if customer else None)
    return ChargeSource(payment_method_id, save=save)


def charge_source_ready(*, user_id: int, source: ChargeSource) -> ChargeSource:
    """Attach a card the client asked to save to the user's customer, just before paying."""
    if not source.save or source.payment_method_id is None:
        return source
    customer_id = stripe_customer_get_or_create(user_id=user_id)
    method = gateway.payment_method_attach(
        payment_method_id=source.payment_method_id, customer_id=customer_id
    )
    _card_upsert(user_id=user_id, method=method)
    if not SavedPaymentMethod.objects.filter(user_id=user_id, is_default=True).exists():
        _default_mark(user_id=user_id, payment_method_id=method.id)
    return ChargeSource(method.id, customer_id)


def card_forget(*, payment_method_id: str) -> int:
    """A card Stripe detached from its customer (`payment_method.detached`)."""
    return SavedPaymentMethod.objects.filter(stripe_payment_method_id=payment_method_id).delete()[0]


def card_refresh(*, method: PaymentMethodData) -> SavedPaymentMethod | None:
    """A card attached or updated at Stripe (`payment_method.attached` / `.updated`)."""
    customer = StripeCustomer.objects.filter(stripe_customer_id=method.customer_id).first()
    if customer is None:
        return None
    return _card_upsert(user_id=customer.user_id, method=method)


def customer_default_refresh(*, customer_id: str, default_payment_method_id: str) -> None:
    """The customer's default card changed at Stripe (`customer.updated`)."""
    customer = StripeCustomer.objects.filter(stripe_customer_id=customer_id).first()
    if customer is None or not default_payment_method_id:
        return
    if SavedPaymentMethod.objects.filter(
        user_id=customer.user_id, stripe_payment_method_id=default_payment_method_id
    ).exists():
        _default_mark(user_id=customer.user_id, payment_method_id=default_payment_method_id)
