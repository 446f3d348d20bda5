"""Data rights: everything the platform holds about a user, and erasing their personal data.

The rules:
- The export never carries a secret: tokens show their prefix and dates, never a
  digest; saved cards show brand and last four digits only.
- Erasure anonymises the person and keeps the money: orders, payments, refunds
  and ledger entries stay (they are retained for seven years) and point at the
  anonymised account. It blocks the account first, in one transaction, then
  removes the user's cards and customer at Stripe; every step is idempotent, so
  an erasure interrupted by Stripe is finished by running it again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from backoffice.audit import audit_record
from billing import gateway
from billing.models import CardSetup, SavedPaymentMethod, StripeCustomer, Subscription
from billing.selectors import orders_for_user
from bookings.selectors import bookings_for_user
from credits.selectors import credits_balance_get, credits_transactions_for_user
from kernel.errors import NotFoundError
from kernel.money import format_minor
from platform_core.models import ApiToken

log = logging.getLogger(__name__)

ERASED_PREFIX = "erased-"
Progress = Callable[[str, int, int], None]


def _user(user_id: int):
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        raise NotFoundError(f"No user with id {user_id}.", user_id=user_id)
    return user


# --- export ----------------------------------------------------------------------


def _booking(b) -> dict[str, Any]:
    return {
        "id": b.pk,
        "service": b.service.name,
        "status": b.status,
        "start": b.start,
        "end": b.end,
        "order_id": b.order_id,
        "parent_id": b.parent_id,
        "created_at": b.created_at,
    }


def user_data_export(*, user_id: int) -> dict[str, Any]:
    """Everything held about the user, as plain data (shaped by `UserExportOut`)."""
    user = _user(user_id)
    orders = [
        {
            "id": o.pk,
            "purchase_type": o.purchase_type,
            "order_type": o.order_type,
            "status": o.status,
            "amount": o.amount,
            "currency": o.currency,
            "amount_display": format_minor(o.amount, o.currency),
            "description": o.description,
            "payment_type": o.payment_type,
            "metadata": o.metadata,
            "created_at": o.created_at,
            "paid_at": o.paid_at,
            "payments": [
                {
                    "stripe_payment_intent_id": p.stripe_payment_intent_id,
                    "status": p.status,
                    "amount": p.amount,
                    "amount_received": p.amount_received,
                    "currency": p.currency,
                    "created_at": p.created_at,
                }
                for p in o.payments.all()
            ],
            "refunds": [
                {
                    "id": r.pk,
                    "amount": r.amount,
                    "currency": r.currency,
                    "status": r.status,
                    "reason": r.reason,
                    "created_at": r.created_at,
                }
                for r in o.refunds.all()
            ],
        }
        for o in orders_for_user(user_id=user_id)
    ]
    bookings = []
    for b in bookings_for_user(user_id=user_id):
        bookings.append(_booking(b))
        bookings.extend(_booking(child) for child in b.children.all())
    customer = StripeCustomer.objects.filter(user_id=user_id).first()
    return {
        "exported_at": timezone.now(),
        "profile": {
            "id": user.pk,
            "username": user.get_username(),
            "email": user.email,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "is_active": user.is_active,
            "date_joined": user.date_joined,
            "last_login": user.last_login,
        },
        "orders": orders,
        "credits": {
            "balance": credits_balance_get(user_id=user_id),
            "entries": list(
                credits_transactions_for_user(user_id=user_id).values(
                    "id", "amount", "kind", "reference", "balance_after", "memo", "created_at"
                )
            ),
        },
        "bookings": bookings,
        "saved_cards": list(
            SavedPaymentMethod.objects.filter(user_id=user_id)
            .order_by("id")
            .values("card_brand", "last4", "is_default", "created_at")
        ),
        "stripe_customer_id": customer.stripe_customer_id if customer else None,
        "subscriptions": list(
            Subscription.objects.filter(user_id=user_id)
            .order_by("id")
            .values(
                "id",
                "plan_name",
                "status",
                "current_period_end",
                "cancel_at_period_end",
                "canceled_at",
                "created_at",
            )
        ),
        "api_tokens": list(
            ApiToken.objects.filter(user_id=user_id)
            .order_by("id")
            .values("prefix", "name", "created_at", "last_used_at", "revoked_at")
        ),
    }


# --- erasure ---------------------------------------------------------------------


@dataclass(frozen=True)
class ErasureReport:
    user_id: int
    already_erased: bool
    tokens_revoked: int
    cards_removed: int
    customer_deleted: bool


def _account_anonymise(user_id: int, *, actor_id: int | None, reason: str) -> tuple[bool, int]:
    """Block the account, strip what identifies the person, and audit it, in one
    transaction. Answers (it was erased before, tokens revoked now)."""
    with transaction.atomic():
        user = get_user_model().objects.select_for_update().get(pk=user_id)
        erased_name = f"{ERASED_PREFIX}{user.pk}"
        was_erased = user.get_username() == erased_name and not user.is_active
        setattr(user, user.USERNAME_FIELD, erased_name)
        user.email = ""
        user.first_name = ""
        user.last_name = ""
        user.is_active = False
        user.is_staff = False
        user.is_superuser = False
        user.set_unusable_password()  # also ends every session: its auth hash changes
        user.save()
        user.groups.clear()
        user.user_permissions.clear()
        tokens = ApiToken.objects.filter(user_id=user_id, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        ApiToken.objects.filter(user_id=user_id).exclude(name="").update(name="")
        CardSetup.objects.filter(user_id=user_id).delete()
        audit_record(
            actor_id=actor_id,
            action="user.erase",
            object_type="auth.user",
            object_id=user_id,
            object_repr=erased_name,
            reason=reason,
            details={"already_erased": was_erased, "tokens_revoked": tokens},
        )
    return was_erased, tokens


def _cards_remove(user_id: int, progress: Progress) -> int:
    cards = list(
        SavedPaymentMethod.objects.filter(user_id=user_id).values_list(
            "pk", "stripe_payment_method_id"
        )
    )
    for done, (pk, payment_method_id) in enumerate(cards, start=1):
        try:
            gateway.payment_method_detach(payment_method_id=payment_method_id)
        except gateway.PaymentGatewayError as exc:
            if exc.retryable:
                raise  # Stripe is unreachable: run the erasure again later
            # Final refusals mean the card is not attached any more.
            log.info("erasure of user %s: card %s already detached", user_id, pk)
        SavedPaymentMethod.objects.filter(pk=pk).delete()
        progress("cards", done, len(cards))
    return len(cards)


def _customer_delete(user_id: int) -> bool:
    customer = StripeCustomer.objects.filter(user_id=user_id).first()
    if customer is None:
        return False
    deleted = gateway.customer_delete(customer_id=customer.stripe_customer_id)
    customer.delete()
    return deleted


def user_erase(
    *,
    user_id: int,
    actor_id: int | None,
    reason: str = "",
    progress: Progress | None = None,
) -> ErasureReport:
    """Erase a user's personal data and keep their financial records; both steps audited.

    `progress(step, done, total)` is told as each step moves.
    """
    show = progress or (lambda step, done, total: None)
    _user(user_id)
    was_erased, tokens = _account_anonymise(user_id, actor_id=actor_id, reason=reason)
    show("account", 1, 1)
    cards = _cards_remove(user_id, show)
    if not cards:
        show("cards", 0, 0)
    customer_deleted = _customer_delete(user_id)
    show("stripe customer", 1, 1)
    audit_record(
        actor_id=actor_id,
        action="user.erase.stripe",
        object_type="auth.user",
        object_id=user_id,
        object_repr=f"{ERASED_PREFIX}{user_id}",
        reason=reason,
        details={"cards_removed": cards, "stripe_customer_deleted": customer_deleted},
    )
    log.info("user %s erased", user_id, extra={"user_id": user_id})
    return ErasureReport(user_id, was_erased, tokens, cards, customer_deleted)
