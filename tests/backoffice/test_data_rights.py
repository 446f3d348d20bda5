"""Data rights: a user's export holds all they have and no secret; erasure anonymises the
person, keeps the money, removes them at Stripe, and can be run again."""

from __future__ import annotations

import json

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from backoffice.data_rights import user_data_export
from billing.models import Order, SavedPaymentMethod, StripeCustomer
from credits.models import CreditTransaction
from platform_core.models import ApiToken, AuditEntry
from tests.conftest import PASSWORD, ApiClient
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

BUY_AND_SAVE = {
    "is_credit_purchase": True,
    "credit_amount": 100,
    "payment_method_id": "pm_card_visa",
    "save_payment_method": True,
}


@pytest.fixture
def customer(user, api, stripe_server):
    """A user who bought credits with a card they saved (so Stripe has a customer)."""
    user.first_name, user.last_name = "Ada", "Lovelace"
    user.save()
    resp = api.post("/payments/create/", BUY_AND_SAVE)
    assert resp.status_code == 201, resp.content
    assert SavedPaymentMethod.objects.filter(user=user).exists()
    return user


def test_the_export_holds_everything_about_me_and_no_secret(customer, api):
    token_row = ApiToken.objects.get(user=customer)
    resp = api.get("/me/export/")
    assert resp.status_code == 200
    data = resp.json()
    assert data["profile"]["username"] == customer.username
    assert data["profile"]["email"] == customer.email
    assert (data["profile"]["first_name"], data["profile"]["last_name"]) == ("Ada", "Lovelace")
    [order] = data["orders"]
    assert (order["amount"], order["currency"], order["status"]) == (1000, "usd", "paid")
    assert order["payments"][0]["amount_received"] == 1000
    assert data["credits"]["balance"] == 100
    assert [e["reference"] for e in data["credits"]["entries"]] == [f"order-{order['id']}"]
    assert data["saved_cards"] == [
        {
            "card_brand": "visa",
            "last4": "4242",
            "is_default": True,
            "created_at": data["saved_cards"][0]["created_at"],
        }
    ]
    assert data["stripe_customer_id"].startswith("cus_")
    assert data["api_tokens"][0]["prefix"] == token_row.prefix
    raw = json.dumps(data)
    assert token_row.digest not in raw and api.token not in raw
    assert "pm_card_visa" not in raw and "secret" not in raw


def test_the_export_shows_only_my_own_data(customer, other_api):
    data = other_api.get("/me/export/").json()
    assert data["orders"] == [] and data["saved_cards"] == []
    assert data["credits"] == {"balance": 0, "entries": []}


def test_the_export_needs_a_user(anon_api):
    assert anon_api.get("/me/export/").status_code == 401


def test_erasure_round_trip(customer, api, stripe_server, capsys):
    order = Order.objects.get(user=customer)
    customer_id = StripeCustomer.objects.get(user=customer).stripe_customer_id
    username = customer.username
    browser = Client()
    assert browser.login(username=username, password=PASSWORD)

    call_command("erase_user", username, "--yes", "--reason", "ticket 42")
    progress = capsys.readouterr()
    assert "account" in progress.err and "cards" in progress.err and "1/1" in progress.err
    assert "1 cards removed, Stripe customer deleted" in progress.out

    # The person is gone and cannot come back in.
    user = get_user_model().objects.get(pk=customer.pk)
    assert user.username == f"erased-{user.pk}"
    assert (user.email, user.first_name, user.last_name) == ("", "", "")
    assert not user.is_active and not user.has_usable_password()
    assert api.get("/credits/balance/").status_code == 401
    assert not ApiToken.objects.filter(user=customer, revoked_at__isnull=True).exists()
    login = ApiClient().post("/auth/token/", {"username": username, "password": PASSWORD})
    assert login.status_code == 401
    assert not Client().login(username=username, password=PASSWORD)
    assert browser.get("/api/v1/me/export/").status_code == 401  # the session ended

    # The money stays, and the export (run by staff) shows the anonymised profile.
    data = user_data_export(user_id=customer.pk)
    assert data["profile"]["username"] == f"erased-{customer.pk}"
    assert data["profile"]["email"] == ""
    assert [(o["id"], o["amount"], o["status"]) for o in data["orders"]] == [
        (order.pk, 1000, "paid")
    ]
    assert CreditTransaction.objects.filter(reference=f"order-{order.pk}").exists()
    assert data["saved_cards"] == [] and data["stripe_customer_id"] is None

    # Stripe no longer has the customer.
    gone = requests.get(
        f"{stripe_server.base}/v1/customers/{customer_id}",
        headers={"Authorization": "Bearer sk_test_localstripe"},
        timeout=10,
    )
    assert gone.status_code == 404 or gone.json().get("deleted") is True

    audit = AuditEntry.objects.filter(object_type="auth.user", object_id=str(customer.pk))
    assert sorted(audit.values_list("action", flat=True)) == ["user.erase", "user.erase.stripe"]
    assert audit.get(action="user.erase").reason == "ticket 42"

    # Idempotent: a second run finishes cleanly and changes nothing.
    call_command("erase_user", str(customer.pk), "--yes")
    assert "it had been before" in capsys.readouterr().out
    assert get_user_model().objects.get(pk=customer.pk).username == f"erased-{customer.pk}"
    assert Order.objects.filter(user_id=customer.pk).count() == 1


def test_the_erase_command_asks_first_and_refuses_unknown_users(user):
    with pytest.raises(CommandError, match="--yes"):
        call_command("erase_user", user.username)  # not a terminal, no --yes
    with pytest.raises(CommandError, match="No user"):
        call_command("erase_user", "nobody-at-all", "--yes")
    user.refresh_from_db()
    assert user.is_active


def test_staff_with_the_permission_erase_from_the_admin(customer, stripe_server):
    officer = UserFactory(is_staff=True)
    officer.user_permissions.add(
        Permission.objects.get(codename="view_user"),
        Permission.objects.get(codename="erase_user"),
    )
    client = Client()
    client.force_login(officer)
    url = reverse("admin:auth_user_changelist")
    page = client.post(
        url, {"action": "erase_personal_data", "index": "0", "_selected_action": [customer.pk]}
    )
    assert page.status_code == 200 and customer.username in page.content.decode()
    customer.refresh_from_db()
    assert customer.is_active  # the confirmation page erased nothing
    resp = client.post(
        url,
        {
            "action": "erase_personal_data",
            "_selected_action": [customer.pk],
            "apply": "1",
            "reason": "GDPR request 7",
        },
    )
    assert resp.status_code == 302
    customer.refresh_from_db()
    assert customer.username == f"erased-{customer.pk}" and not customer.is_active
    assert not SavedPaymentMethod.objects.filter(user=customer).exists()
    entry = AuditEntry.objects.get(action="user.erase")
    assert (entry.actor, entry.reason) == (officer, "GDPR request 7")


def test_staff_without_the_permission_cannot_erase(user):
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_user"))
    client = Client()
    client.force_login(viewer)
    client.post(
        reverse("admin:auth_user_changelist"),
        {
            "action": "erase_personal_data",
            "_selected_action": [user.pk],
            "apply": "1",
            "reason": "x",
        },
    )
    user.refresh_from_db()
    assert user.is_active and not AuditEntry.objects.exists()
