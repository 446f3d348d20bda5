"""The dashboard's figures equal figures worked out in the test, from the rows it made
(`tests.backoffice.books`: specifications in, expected figures computed in Python)."""

from __future__ import annotations

from datetime import date

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from tests.backoffice.books import END, START, books_make
from tests.conftest import ApiClient, client_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def books():
    return books_make()


@pytest.fixture
def finance():
    staff = UserFactory(is_staff=True)
    staff.groups.add(Group.objects.get(name="finance"))
    return staff


def test_the_dashboard_api_figures_equal_the_books(books, finance):
    resp = client_for(finance).get("/admin/dashboard/", start=START, end=END)
    assert resp.status_code == 200, resp.content
    got = resp.json()
    assert got["period"] == {"start": "2025-01-10", "end": "2025-01-12", "days": 3}
    assert {
        r["currency"]: (r["gross"], r["refunded"], r["net"], r["orders"]) for r in got["revenue"]
    } == books["revenue"]
    days = {(date.fromisoformat(d["date"]), d["currency"]): d["net"] for d in got["revenue_days"]}
    assert len(days) == 3 * len(books["revenue"])  # every day of every currency, zeros too
    assert {k: v for k, v in days.items() if v} == {k: v for k, v in books["per_day"].items() if v}
    assert {r["currency"]: (r["count"], r["amount"]) for r in got["refunds"]} == books["refunds"]
    assert got["payments"] == books["payments"]
    assert got["credits"] == books["credits"]
    assert got["subscriptions"]["active"] == books["subscriptions"]["active"]
    assert got["subscriptions"]["unpriced"] == books["subscriptions"]["unpriced"]
    assert {m["currency"]: m["amount"] for m in got["subscriptions"]["mrr"]} == books[
        "subscriptions"
    ]["mrr"]
    assert got["webhooks"] == books["webhooks"]
    displays = {r["currency"]: r["net_display"] for r in got["revenue"]}
    assert displays["usd"] == "46.00 USD"  # 10 + 25 + 19 − 5 − 3
    assert displays["kwd"] == "1.23 KWD"  # three-decimal currency, shown to two
    assert displays["jpy"] == "0 JPY"


def test_the_dashboard_defaults_to_the_last_30_days(finance):
    got = client_for(finance).get("/admin/dashboard/").json()
    start, end = (
        date.fromisoformat(got["period"]["start"]),
        date.fromisoformat(got["period"]["end"]),
    )
    assert (end - start).days == 29 and got["period"]["days"] == 30
    assert got["revenue"] == [] and got["payments"]["success_rate"] is None


@pytest.mark.parametrize(
    "query", [{"start": "2025-02-01", "end": "2025-01-01"}, {"start": "2020-01-01"}]
)
def test_a_period_backwards_or_too_long_is_refused(finance, query):
    resp = client_for(finance).get("/admin/dashboard/", **query)
    assert resp.status_code == 422 and resp.json()["code"] == "invalid_input"


def test_the_dashboard_is_for_finance_staff_only(user):
    assert client_for(user).get("/admin/dashboard/").status_code == 403
    no_role = UserFactory(is_staff=True)
    assert client_for(no_role).get("/admin/dashboard/").status_code == 403
    support = UserFactory(is_staff=True)
    support.groups.add(Group.objects.get(name="support"))
    assert client_for(support).get("/admin/dashboard/").status_code == 403
    assert ApiClient().get("/admin/dashboard/").status_code == 401


def test_the_dashboard_page_shows_the_same_figures_and_charts(books, finance):
    client = Client()
    client.force_login(finance)
    page = client.get(reverse("admin:ops_dashboard"), {"start": START, "end": END})
    assert page.status_code == 200
    text = page.content.decode()
    assert "46.00 USD" in text and "1.23 KWD" in text
    assert f"{books['payments']['success_rate'] * 100:.1f}%" in text
    assert text.count('<svg class="chart"') >= len(books["revenue"]) + 3
    assert 'class="bar"' in text
    # A day's column: 25 + 19 paid that day, nothing refunded.
    assert "2025-01-11: 44.00 USD net (44.00 USD paid, 0.00 USD refunded)" in text
    bad = client.get(reverse("admin:ops_dashboard"), {"start": "not-a-date"})
    assert bad.status_code == 200 and "is a date such as" in bad.content.decode()


def test_an_end_in_the_first_days_of_year_one_is_not_a_500(staff_user):
    resp = client_for(staff_user).get("/admin/dashboard/", end="0001-01-01")
    assert resp.status_code == 422
    assert resp.json()["extra"]["field"] == "end"


def test_the_dashboard_counts_disputes_open_now_and_won_or_lost_in_the_period(finance):
    from billing.models import Dispute
    from tests.backoffice.books import at
    from tests.billing.factories import PaymentFactory
    from tests.stripe_events import new_id

    def dispute(outcome: str, amount: int, opened, closed=None, currency="usd", ours=True):
        payment = PaymentFactory(order__currency=currency) if ours else None
        Dispute.objects.create(
            stripe_dispute_id=new_id("dp"),
            order=payment.order if payment else None,
            payment=payment,
            amount=amount,
            currency=currency,
            status={"open": "needs_response", "not_ours": "needs_response"}.get(outcome, outcome),
            outcome=outcome,
            opened_at=opened,
            closed_at=closed,
        )

    dispute("open", 1000, at(11))  # opened in the period, open now
    dispute("open", 700, at(1))  # opened before it, still open
    dispute("won", 500, at(10), at(12))
    dispute("lost", 2500, at(9), at(11))  # opened before, lost in the period
    dispute("lost", 999, at(1), at(2))  # lost before the period: not in it
    dispute("not_ours", 4000, at(11), ours=False)  # another system's: left out
    dispute("open", 300, at(12), currency="eur")

    got = client_for(finance).get("/admin/dashboard/", start=START, end=END).json()
    assert {
        d["currency"]: (
            *(d[k] for k in ("open", "open_amount", "opened", "won", "lost", "lost_amount")),
            d["lost_display"],
        )
        for d in got["disputes"]
    } == {
        "usd": (2, 1700, 2, 1, 1, 2500, "25.00 USD"),
        "eur": (1, 300, 1, 0, 0, 0, "0.00 EUR"),
    }
    client = Client()
    client.force_login(finance)
    text = client.get(reverse("admin:ops_dashboard"), {"start": START, "end": END}).content
    text = text.decode()
    assert 'data-figure="open-disputes"><span class="label">Open disputes</span>' in text
    assert '<span class="figure">3</span>' in text
    assert "<td>USD</td><td>2</td><td>17.00 USD</td><td>2</td><td>1</td><td>1</td>" in text


def test_the_dashboard_shows_credit_lots_expiry_and_deferred_revenue(finance):
    from datetime import timedelta

    from django.utils import timezone

    from credits.services import credits_expire_due, credits_grant, credits_spend

    buyer = UserFactory()
    now = timezone.now()
    # 100 credits bought for 10.00 EUR, a quarter spent: 7.50 EUR not yet earned.
    credits_grant(
        user_id=buyer.pk,
        amount=100,
        reference="order-1",
        kind="purchase",
        source_order_id=1,
        cost_basis=1000,
        currency="eur",
        expires_at=now + timedelta(days=30),
    )
    credits_spend(user_id=buyer.pk, amount=25, reference="x")
    credits_grant(
        user_id=buyer.pk,
        amount=40,
        reference="promo",
        category="promotional",
        expires_at=now - timedelta(seconds=1),
    )
    credits_grant(user_id=buyer.pk, amount=9, reference="welcome", category="promotional")
    assert credits_expire_due(now=now) == 1

    got = client_for(finance).get("/admin/dashboard/").json()["credits"]
    assert got["expired"] == 40
    assert got["outstanding_by_category"] == {"paid": 75, "promotional": 9}
    assert [(m["currency"], m["amount"]) for m in got["deferred_revenue"]] == [("eur", 750)]
    assert got["outstanding"] == 84
