"""The admin: every page renders, money stays read-only, and each role sees what it should."""

from __future__ import annotations

import pytest
from django.contrib.admin.sites import site
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from billing.models import Order, Refund, StripeEvent
from credits.models import CreditTransaction
from platform_core.auth import api_token_create
from platform_core.models import AuditEntry
from tests.backoffice.seed import seed_every_model
from tests.conftest import PASSWORD
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

# Apps whose every model must have a row in the seed, so its change page is rendered too.
SEEDED_APPS = {"billing", "credits", "bookings", "purchasables", "platform_core"}
REGISTERED = sorted(site._registry, key=lambda m: m._meta.label)


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def member_of(group: str, **kwargs):
    user = UserFactory(is_staff=True, **kwargs)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def superuser():
    return UserFactory(is_staff=True, is_superuser=True)


@pytest.fixture
def seeded(superuser):
    data = seed_every_model()
    api_token_create(username=data["user"].username, password=PASSWORD)
    return data


@pytest.mark.parametrize("model", REGISTERED, ids=lambda m: m._meta.label)
def test_every_registered_model_has_a_working_changelist_and_change_page(model, seeded, superuser):
    client = client_for(superuser)
    opts = model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    assert client.get(changelist).status_code == 200
    obj = model._default_manager.order_by("pk").first()
    if obj is None:
        assert opts.app_label not in SEEDED_APPS, f"the seed makes no {opts.label}"
        return
    change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)])
    assert client.get(change).status_code == 200


def test_the_operations_pages_render_for_a_superuser(seeded, superuser):
    client = client_for(superuser)
    index = client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:ops_dashboard") in index and reverse("admin:ops_plugins") in index
    plugins = client.get(reverse("admin:ops_plugins"))
    assert plugins.status_code == 200
    text = plugins.content.decode()
    assert "credits" in text and "gift_cards" in text and "tollgate-gift-cards" in text


def test_an_order_page_shows_payments_refunds_events_fulfilment_ledger_and_bookings(
    seeded, superuser
):
    order = seeded["order"]
    page = client_for(superuser).get(reverse("admin:billing_order_change", args=[order.pk]))
    text = page.content.decode()
    payment = order.payments.get()
    assert payment.stripe_payment_intent_id in text
    assert "re_seed1" in text  # the refund
    assert "evt_seed1" in text  # the event about its PaymentIntent
    assert "Fulfilment" in text
    assert f"order-{order.pk}" in text  # the ledger entry it caused
    assert "Seed workshop" in text  # the booking it made
    assert "Refund…" in text  # a superuser may refund


def test_orders_are_found_by_checkout_session_charge_and_email(seeded, superuser):
    client = client_for(superuser)
    other = seeded["order"]
    checkout = Order.objects.create(
        user=UserFactory(email="findme@example.com"),
        purchase_type="credits",
        order_type="credit",
        amount=500,
        currency="eur",
        description="50 credits",
        payment_type="checkout",
        stripe_checkout_session_id="cs_test_findme",
    )
    url = reverse("admin:billing_order_changelist")
    for term in ("cs_test_findme", "findme@example.com"):
        found = client.get(url, {"q": term}).context["cl"].result_list
        assert [o.pk for o in found] == [checkout.pk]
    found = client.get(url, {"q": "ch_seed1"}).context["cl"].result_list
    assert [o.pk for o in found] == [other.pk]
    assert "5.00 EUR" in client.get(url).content.decode()
    filtered = client.get(url, {"currency": "eur"}).context["cl"].result_list
    assert [o.pk for o in filtered] == [checkout.pk]


def test_a_stripe_event_page_shows_its_traceback_and_payload_and_edits_nothing(seeded, superuser):
    client = client_for(superuser)
    event = seeded["event"]
    url = reverse("admin:billing_stripeevent_change", args=[event.pk])
    text = client.get(url).content.decode()
    assert "ValueError: seeded failure" in text
    assert "&quot;evt_seed1&quot;" in text  # the raw payload, escaped
    assert 'name="status"' not in text  # no input: nothing editable
    assert client.post(url, {"status": "processed"}).status_code == 403
    event.refresh_from_db()
    assert event.status == StripeEvent.Status.FAILED
    changelist = client.get(reverse("admin:billing_stripeevent_changelist")).content.decode()
    assert "Replay all 1 failed" in changelist


def test_replay_all_failed_requeues_every_failed_event_and_only_those(seeded, superuser):
    event = seeded["event"]
    second = StripeEvent.objects.create(
        stripe_id="evt_seed2", type="charge.refunded", payload={}, status="failed", attempts=8
    )
    done = StripeEvent.objects.create(
        stripe_id="evt_seed3", type="charge.refunded", payload={}, status="processed", attempts=1
    )
    resp = client_for(superuser).post(
        reverse("admin:billing_stripeevent_changelist") + "?status__exact=failed",
        {"action": "replay", "index": "0", "select_across": "1", "_selected_action": [event.pk]},
    )
    assert resp.status_code == 302
    statuses = dict(StripeEvent.objects.values_list("stripe_id", "status"))
    assert statuses == {"evt_seed1": "pending", "evt_seed2": "pending", "evt_seed3": "processed"}
    replays = AuditEntry.objects.filter(action="event.replay", actor=superuser)
    assert sorted(replays.values_list("object_id", flat=True)) == sorted(
        [str(event.pk), str(second.pk)]
    )
    assert str(done.pk) not in replays.values_list("object_id", flat=True)


def test_ledger_entries_cannot_be_added_changed_or_deleted_through_the_admin(seeded):
    finance = member_of("finance")  # may grant, so holds add_credittransaction
    client = client_for(finance)
    entry = CreditTransaction.objects.get(reference=f"order-{seeded['order'].pk}")
    change = reverse("admin:credits_credittransaction_change", args=[entry.pk])
    page = client.get(change)
    assert page.status_code == 200 and 'name="amount"' not in page.content.decode()
    assert client.post(change, {"amount": "99999", "memo": "edited"}).status_code == 403
    delete = reverse("admin:credits_credittransaction_delete", args=[entry.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    add = reverse("admin:credits_credittransaction_add")
    assert client.get(add).status_code == 403
    account = entry.account
    account_change = reverse("admin:credits_creditaccount_change", args=[account.pk])
    assert client.post(account_change, {"balance": "99999"}).status_code == 403
    entry.refresh_from_db()
    account.refresh_from_db()
    assert (entry.amount, entry.memo, account.balance) == (100, "", 100)


def test_the_grant_form_writes_a_new_entry_with_its_memo_and_is_audited(seeded):
    finance = member_of("finance")
    user = seeded["user"]
    client = client_for(finance)
    url = reverse("admin:credits_credittransaction_grant")
    assert client.get(url, {"user": user.pk}).status_code == 200
    resp = client.post(url, {"user": user.username, "amount": "-40", "memo": "Goodwill fix"})
    assert resp.status_code == 302
    entry = CreditTransaction.objects.get(kind="adjustment")
    assert (entry.amount, entry.memo, entry.balance_after) == (-40, "Goodwill fix", 60)
    assert entry.created_by == finance
    audit = AuditEntry.objects.get(action="credits.adjust")
    assert (audit.actor, audit.reason, audit.details["amount"]) == (finance, "Goodwill fix", -40)
    # Below zero is refused and writes nothing.
    resp = client.post(url, {"user": user.pk, "amount": "-1000", "memo": "too much"})
    assert resp.status_code == 200 and "The balance is 60 credits" in resp.content.decode()
    assert CreditTransaction.objects.count() == 2


def test_support_reads_everything_but_cannot_refund_grant_replay_or_see_the_dashboard(seeded):
    support = member_of("support")
    client = client_for(support)
    order = seeded["order"]
    for name in ("billing_order", "billing_stripeevent", "credits_credittransaction"):
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200
    assert client.get(reverse("admin:ops_plugins")).status_code == 200
    assert client.get(reverse("admin:ops_dashboard")).status_code == 403
    assert client.get(reverse("admin:credits_credittransaction_grant")).status_code == 403
    assert (
        "Refund…"
        not in client.get(reverse("admin:billing_order_change", args=[order.pk])).content.decode()
    )
    changelist = reverse("admin:billing_order_changelist")
    for action in ("refund_in_full", "refund_with_form"):
        client.post(
            changelist,
            {
                "action": action,
                "_selected_action": [order.pk],
                "apply": "1",
                "reason": "support tries",
                f"refunds_seen_{order.pk}": "1",
            },
        )
    client.post(
        reverse("admin:billing_stripeevent_changelist"),
        {"action": "replay", "_selected_action": [seeded["event"].pk]},
    )
    assert Refund.objects.count() == 1  # the seeded one
    assert StripeEvent.objects.get().status == StripeEvent.Status.FAILED
    assert not AuditEntry.objects.filter(actor=support).exists()


def test_finance_sees_the_dashboard_without_being_superuser(seeded):
    client = client_for(member_of("finance"))
    assert client.get(reverse("admin:ops_dashboard")).status_code == 200
    assert client.get(reverse("admin:platform_core_auditentry_changelist")).status_code == 200


def test_the_audit_log_cannot_be_changed_even_by_a_superuser(seeded, superuser):
    client = client_for(superuser)
    entry = AuditEntry.objects.get(action="seed")
    change = reverse("admin:platform_core_auditentry_change", args=[entry.pk])
    assert client.post(change, {"reason": "rewritten"}).status_code == 403
    delete = reverse("admin:platform_core_auditentry_delete", args=[entry.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    entry.refresh_from_db()
    assert entry.reason == "seeded"


def test_a_change_made_in_the_admin_is_audited(superuser):
    from credits.models import CreditPack

    pack = CreditPack.objects.create(name="Small", credits=10, price=100)
    client = client_for(superuser)
    url = reverse("admin:credits_creditpack_change", args=[pack.pk])
    resp = client.post(
        url,
        {"name": "Small", "credits": 10, "price": 150, "currency": "usd", "sort_order": 0},
    )
    assert resp.status_code == 302
    audit = AuditEntry.objects.get(action="admin.change")
    assert (audit.actor, audit.object_type, audit.object_id) == (
        superuser,
        "credits.creditpack",
        str(pack.pk),
    )
    assert "Price" in audit.reason


def test_deleting_several_objects_in_the_admin_audits_each(superuser):
    from credits.models import CreditPack

    packs = [CreditPack.objects.create(name=f"Old {n}", credits=10, price=100) for n in range(2)]
    resp = client_for(superuser).post(
        reverse("admin:credits_creditpack_changelist"),
        {"action": "delete_selected", "post": "yes", "_selected_action": [p.pk for p in packs]},
    )
    assert resp.status_code == 302 and not CreditPack.objects.exists()
    deleted = AuditEntry.objects.filter(action="admin.delete", object_type="credits.creditpack")
    assert sorted(deleted.values_list("object_id", flat=True)) == sorted(str(p.pk) for p in packs)
    assert {e.actor for e in deleted} == {superuser}
