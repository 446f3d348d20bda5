"""The billing admin: pages render, money records are read-only, failed events replay."""

from __future__ import annotations

import pytest
from django.contrib.admin.sites import site
from django.test import Client
from django.urls import reverse

from billing.models import Order, Payment, StripeEvent
from billing.services.events import events_drain
from platform_core.models import ApiToken
from tests.billing.conftest import post_webhook
from tests.billing.factories import PaymentFactory
from tests.factories import UserFactory
from tests.stripe_events import event, payment_intent

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


@pytest.mark.parametrize("model", [Order, Payment, StripeEvent, ApiToken])
def test_changelists_render(admin_client, model):
    PaymentFactory()
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    assert admin_client.get(url).status_code == 200


def test_an_order_page_shows_its_payment(admin_client):
    payment = PaymentFactory()
    resp = admin_client.get(reverse("admin:billing_order_change", args=[payment.order_id]))
    assert resp.status_code == 200
    assert payment.stripe_payment_intent_id in resp.content.decode()
    assert (
        "10.00 USD" in admin_client.get(reverse("admin:billing_order_changelist")).content.decode()
    )


@pytest.mark.parametrize("model", [Order, Payment, StripeEvent])
def test_money_records_cannot_be_added_changed_or_deleted(rf, model):
    request = rf.get("/")
    request.user = UserFactory(is_staff=True, is_superuser=True)
    model_admin = site._registry[model]
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_delete_permission(request, None)
    assert not model_admin.has_change_permission(request, model.objects.none().model())


def test_replay_action_requeues_a_failed_event(admin_client):
    payment = PaymentFactory()
    obj = payment_intent(
        id=payment.stripe_payment_intent_id, amount=1, metadata=payment.order.metadata
    )
    post_webhook(event("payment_intent.succeeded", obj))
    events_drain()
    failed = StripeEvent.objects.get()
    assert failed.status == StripeEvent.Status.FAILED
    resp = admin_client.post(
        reverse("admin:billing_stripeevent_changelist"),
        {"action": "replay", "_selected_action": [failed.pk]},
    )
    assert resp.status_code == 302
    failed.refresh_from_db()
    assert failed.status == StripeEvent.Status.PENDING
    assert failed.attempts == 0


def test_a_staff_user_without_permissions_cannot_see_orders():
    client = Client()
    client.force_login(UserFactory(is_staff=True))
    assert client.get(reverse("admin:billing_order_changelist")).status_code == 403


def test_a_viewer_without_the_refund_permission_cannot_refund_from_the_admin(stripe_server):
    from django.contrib.auth.models import Permission

    from billing.models import Refund

    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_order"))
    payment = PaymentFactory(status="succeeded", amount_received=1000)
    Order.objects.filter(pk=payment.order_id).update(status=Order.Status.PAID)
    client = Client()
    client.force_login(viewer)
    assert client.get(reverse("admin:billing_order_changelist")).status_code == 200
    resp = client.post(
        reverse("admin:billing_order_changelist"),
        {"action": "refund_in_full", "_selected_action": [payment.order_id]},
    )
    assert not Refund.objects.exists()
    assert resp.status_code in (200, 302)


def test_the_refund_action_refunds_once_for_staff_allowed_to(staff_api, api, stripe_server):
    from django.contrib.auth.models import Permission

    from billing.models import Refund

    order_id = api.post(
        "/payments/create/",
        {"is_credit_purchase": True, "credit_amount": 100, "payment_method_id": "pm_card_visa"},
    ).json()["order_id"]
    finance = UserFactory(is_staff=True)
    finance.user_permissions.add(
        Permission.objects.get(codename="view_order"),
        Permission.objects.get(codename="add_refund"),
    )
    client = Client()
    client.force_login(finance)
    for _ in range(2):
        client.post(
            reverse("admin:billing_order_changelist"),
            {"action": "refund_in_full", "_selected_action": [order_id]},
        )
    [refund] = Refund.objects.all()
    assert (refund.amount, refund.status) == (1000, "succeeded")
    assert Order.objects.get(pk=order_id).status == Order.Status.REFUNDED


def test_a_dispute_shows_in_its_list_and_on_its_order_page(admin_client):
    from billing.models import Dispute

    payment = PaymentFactory(stripe_charge_id="ch_disputed")
    dispute = Dispute.objects.create(
        stripe_dispute_id="dp_admin_page",
        order=payment.order,
        payment=payment,
        stripe_charge_id="ch_disputed",
        amount=1000,
        currency="usd",
        reason="fraudulent",
        status="needs_response",
    )
    listing = admin_client.get(reverse("admin:billing_dispute_changelist"), {"outcome": "open"})
    assert listing.status_code == 200
    assert "dp_admin_page" in listing.content.decode()
    assert "10.00 USD" in listing.content.decode()
    detail = admin_client.get(reverse("admin:billing_dispute_change", args=[dispute.pk]))
    assert detail.status_code == 200 and "fraudulent" in detail.content.decode()
    order_page = admin_client.get(reverse("admin:billing_order_change", args=[payment.order_id]))
    text = order_page.content.decode()
    assert reverse("admin:billing_dispute_change", args=[dispute.pk]) in text
    assert "needs_response" in text
    found = admin_client.get(reverse("admin:billing_order_changelist"), {"q": "dp_admin_page"})
    assert f"/admin/billing/order/{payment.order_id}/change/" in found.content.decode()
