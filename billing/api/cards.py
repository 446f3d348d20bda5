"""Saved cards: add one with a SetupIntent, list, choose the default, delete."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from ninja import Router, Status

from billing.schemas import CardSetupOut, DefaultCardIn, PaymentMethodOut, PaymentMethodsOut
from billing.services.cards import card_default_set, card_delete, card_setup_start, cards_sync
from kernel.schemas import ErrorOut

router = Router(tags=["payment methods"])


@router.get("/methods/", response={200: PaymentMethodsOut, 502: ErrorOut})
def payments_methods_list(request: HttpRequest):
    return PaymentMethodsOut(payment_methods=cards_sync(user_id=request.user.pk))


@router.post("/methods/setup/", response={201: CardSetupOut, 429: ErrorOut, 502: ErrorOut})
def payments_methods_setup(request: HttpRequest):
    """A SetupIntent's client secret, to add a card with Stripe.js.

    The same SetupIntent comes back until a card is given to it. 429 with
    `Retry-After` past the per-user rate (`TOLLGATE["RATE_LIMITS"]["card_setup"]`,
    applied by `platform_core.api`).
    """
    intent = card_setup_start(user_id=request.user.pk)
    return Status(
        201,
        CardSetupOut(
            setup_intent_id=intent.id,
            client_secret=intent.client_secret,
            publishable_key=settings.STRIPE_PUBLISHABLE_KEY,
        ),
    )


@router.post(
    "/methods/default/",
    response={200: PaymentMethodOut, 404: ErrorOut, 422: ErrorOut, 502: ErrorOut},
)
def payments_methods_default(request: HttpRequest, payload: DefaultCardIn):
    return card_default_set(user_id=request.user.pk, card=payload.payment_method_id)


@router.delete("/methods/{int:card_id}/", response={204: None, 404: ErrorOut, 502: ErrorOut})
def payments_methods_delete(request: HttpRequest, card_id: int):
    card_delete(user_id=request.user.pk, card_id=card_id)
    return Status(204, None)
