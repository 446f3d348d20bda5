"""The ledger admin: staff can read every entry and account but write none."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.test import Client, RequestFactory
from django.urls import reverse

from credits.models import CreditAccount, CreditPack, CreditTransaction
from tests.credits.ledger_checks import balance_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_for(superuser) -> Client:
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def admin_request(superuser):
    request = RequestFactory().get("/admin/")
    request.user = superuser
    return request


def test_changelist_and_change_page_show_the_ledger(admin_client_for, user, fund):
    entry = fund(user, 42)
    changelist = admin_client_for.get(reverse("admin:credits_credittransaction_changelist"))
    assert changelist.status_code == 200
    assert entry.reference in changelist.content.decode()

    change = admin_client_for.get(
        reverse("admin:credits_credittransaction_change", args=[entry.pk])
    )
    assert change.status_code == 200
    assert entry.reference in change.content.decode()


@pytest.mark.parametrize("model", [CreditTransaction, CreditAccount])
def test_ledger_models_are_view_only(admin_request, model):
    model_admin = admin.site._registry[model]
    assert model_admin.has_view_permission(admin_request) is True
    assert model_admin.has_add_permission(admin_request) is False
    assert model_admin.has_change_permission(admin_request) is False
    assert model_admin.has_delete_permission(admin_request) is False


def test_admin_refuses_to_write_an_entry(admin_client_for, user, fund):
    entry = fund(user, 42)
    change_url = reverse("admin:credits_credittransaction_change", args=[entry.pk])
    posted = admin_client_for.post(
        change_url,
        {"amount": 1_000_000, "kind": "grant", "reference": entry.reference, "memo": "x"},
    )
    assert posted.status_code == 403
    delete_url = reverse("admin:credits_credittransaction_delete", args=[entry.pk])
    assert admin_client_for.post(delete_url, {"post": "yes"}).status_code == 403
    add_url = reverse("admin:credits_credittransaction_add")
    assert admin_client_for.get(add_url).status_code == 403
    bulk = admin_client_for.post(
        reverse("admin:credits_credittransaction_changelist"),
        {"action": "delete_selected", "_selected_action": [entry.pk], "post": "yes"},
    )
    assert bulk.status_code in {200, 302}
    entry.refresh_from_db()
    assert entry.amount == 42
    assert balance_of(user) == 42


def test_account_list_shows_balances_read_only(admin_client_for, user, fund):
    fund(user, 17)
    account = CreditAccount.objects.get(user=user)
    changelist = admin_client_for.get(reverse("admin:credits_creditaccount_changelist"))
    assert changelist.status_code == 200
    assert user.username in changelist.content.decode()
    change_url = reverse("admin:credits_creditaccount_change", args=[account.pk])
    assert admin_client_for.get(change_url).status_code == 200
    assert admin_client_for.post(change_url, {"balance": 10**6}).status_code == 403
    assert balance_of(user) == 17


def test_credit_packs_are_editable(admin_client_for, admin_request):
    model_admin = admin.site._registry[CreditPack]
    assert model_admin.has_add_permission(admin_request) is True
    response = admin_client_for.post(
        reverse("admin:credits_creditpack_add"),
        {
            "name": "Starter",
            "credits": 100,
            "price": 1000,
            "currency": "usd",
            "active": "on",
            "sort_order": 0,
        },
    )
    assert response.status_code == 302, response.content
    assert CreditPack.objects.get().credits == 100


def test_lots_and_draws_show_on_their_pages(admin_client_for, user, fund):
    from credits.models import CreditLot
    from credits.services import credits_spend

    fund(user, 42)
    spend = credits_spend(user_id=user.pk, amount=5, reference="coffee")
    lot = CreditLot.objects.get(account__user=user)

    lots = admin_client_for.get(reverse("admin:credits_creditlot_changelist"))
    assert lots.status_code == 200
    lot_page = admin_client_for.get(reverse("admin:credits_creditlot_change", args=[lot.pk]))
    assert lot_page.status_code == 200
    assert "spend:coffee" in lot_page.content.decode()  # the entry that drew from it
    account = admin_client_for.get(
        reverse("admin:credits_creditaccount_change", args=[lot.account_id])
    )
    assert account.status_code == 200
    # The lot inline shows what is left of the lot.
    assert re.search(r'field-remaining">\s*<p>37</p>', account.content.decode())
    entry_page = admin_client_for.get(
        reverse("admin:credits_credittransaction_change", args=[spend.pk])
    )
    assert entry_page.status_code == 200
    assert f"credits ({lot.source})" in entry_page.content.decode()  # the lot it drew


def test_the_grant_form_makes_a_lot_of_the_chosen_category_and_expiry(admin_client_for, user):
    from credits.models import CreditLot

    response = admin_client_for.post(
        reverse("admin:credits_credittransaction_grant"),
        {
            "user": str(user.pk),
            "amount": "12",
            "memo": "launch offer",
            "category": "paid",
            "expires_at": "2999-01-01 00:00",
        },
    )
    assert response.status_code == 302, response.content
    lot = CreditLot.objects.get(account__user=user)
    assert (lot.category, lot.amount, lot.expires_at.year) == ("paid", 12, 2999)
