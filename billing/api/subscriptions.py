"""Subscriptions and Stripe's customer portal."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Status

from billing.models import Subscription
from billing.schemas import (
    PortalOut,
    SubscriptionCreateIn,
    SubscriptionListOut,
    SubscriptionOut,
    SubscriptionStartOut,
    SubscriptionSummaryOut,
)
from billing.services.subscriptions import portal_url, subscription_cancel, subscription_start
from kernel.schemas import ErrorOut

router = Router(tags=["subscriptions"])


@router.get("/subscriptions/", response=SubscriptionListOut)
def payments_subscriptions_list(request: HttpRequest):
    mine = list(Subscription.objects.filter(user_id=request.user.pk).order_by("-id"))
    live = next((s for s in mine if s.status in Subscription.LIVE_STATUSES), None)
    return SubscriptionListOut(
        subscriptions=mine,
        summary=SubscriptionSummaryOut(
            has_active_subscription=live is not None,
            plan_name=live.plan_name if live else None,
            status=live.status if live else None,
            current_period_end=live.current_period_end if live else None,
            cancel_at_period_end=live.cancel_at_period_end if live else False,
        ),
    )


@router.post(
    "/subscriptions/",
    response={
        201: SubscriptionStartOut,
        402: ErrorOut,
        404: ErrorOut,
        409: ErrorOut,
        422: ErrorOut,
        501: ErrorOut,
        502: ErrorOut,
    },
)
def payments_subscriptions_create(request: HttpRequest, payload: SubscriptionCreateIn):
    subscription, checkout_url = subscription_start(
        user_id=request.user.pk,
        plan_id=payload.plan_id,
        purchase_type=payload.purchase_type,
        payment_method_id=payload.payment_method_id,
        payment_type=payload.payment_type,
        success_url=payload.success_url,
        cancel_url=payload.cancel_url,
    )
    return Status(201, SubscriptionStartOut(subscription=subscription, checkout_url=checkout_url))


@router.delete(
    "/subscriptions/{int:subscription_id}/",
    response={200: SubscriptionOut, 404: ErrorOut, 409: ErrorOut, 502: ErrorOut},
)
def payments_subscriptions_cancel(request: HttpRequest, subscription_id: int):
    return subscription_cancel(user_id=request.user.pk, subscription_id=subscription_id)


@router.post("/portal/", response={200: PortalOut, 501: ErrorOut, 502: ErrorOut})
def payments_portal(request: HttpRequest):
    return PortalOut(url=portal_url(user_id=request.user.pk))
