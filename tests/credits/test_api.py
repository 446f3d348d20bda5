"""The credits API: own data only, pagination, idempotent spends, validation, auth."""

from __future__ import annotations

import pytest
from django.test import Client

from credits.models import CreditTransaction
from credits.services import credits_debit_refund, credits_grant
from tests.credits.ledger_checks import balance_of

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "extra"}
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["extra"], dict)
    return body


# --- balance and transactions ------------------------------------------------------


def test_balance_is_zero_without_an_account(api):
    response = api.get("/credits/balance/")
    assert response.status_code == 200
    assert response.json() == {
        "balance": 0,
        "frozen": 0,
        "currency_unit": "credits",
        "by_category": {"paid": 0, "promotional": 0},
        "expiring_soon": {"credits": 0, "within_days": 30, "first_expires_at": None},
        "lots": [],
        "lots_open": 0,
    }


def test_balance_shows_the_lots_in_draw_order_and_what_expires_soon(api, other_api, user, fund):
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    fund(user, 30)
    credits_grant(
        user_id=user.pk,
        amount=8,
        reference="promo",
        category="promotional",
        expires_at=now + timedelta(days=10),
    )
    credits_grant(user_id=user.pk, amount=5, reference="later", expires_at=now + timedelta(days=90))
    credits_grant(user_id=user.pk, amount=1, reference="spent")
    api.post("/credits/spend/", {"amount": 1, "reference": "x"})  # from `promo`

    body = api.get("/credits/balance/").json()
    assert body["balance"] == 43
    assert body["by_category"] == {"paid": 36, "promotional": 7}
    assert body["expiring_soon"]["credits"] == 7
    assert body["expiring_soon"]["first_expires_at"].startswith(
        (now + timedelta(days=10)).date().isoformat()
    )
    assert [(lot["remaining"], lot["category"]) for lot in body["lots"]] == [
        (7, "promotional"),
        (5, "paid"),
        (30, "paid"),
        (1, "paid"),
    ]
    assert body["lots_open"] == 4
    assert set(body["lots"][0]) == {
        "id",
        "category",
        "source",
        "amount",
        "remaining",
        "expires_at",
        "created_at",
    }
    assert other_api.get("/credits/balance/").json()["lots"] == []


def test_lots_lists_mine_all_or_only_open(api, other_api, user, other_user, fund):
    fund(user, 3)
    fund(user, 4)
    fund(other_user, 9)
    api.post("/credits/spend/", {"amount": 3, "reference": "x"})

    every = api.get("/credits/lots/").json()
    assert every["count"] == 2
    assert [lot["remaining"] for lot in every["items"]] == [4, 0]
    still_open = api.get("/credits/lots/?open=true").json()
    assert [lot["remaining"] for lot in still_open["items"]] == [4]
    assert [lot["amount"] for lot in other_api.get("/credits/lots/").json()["items"]] == [9]


def test_balance_and_transactions_show_only_my_own(api, other_api, user, other_user, fund):
    fund(user, 30)
    fund(other_user, 500)
    other_entry = fund(other_user, 7)

    assert api.get("/credits/balance/").json()["balance"] == 30
    assert other_api.get("/credits/balance/").json()["balance"] == 507

    mine = api.get("/credits/transactions/").json()
    assert mine["count"] == 1
    assert [e["amount"] for e in mine["items"]] == [30]
    assert other_entry.pk not in {e["id"] for e in mine["items"]}

    theirs = other_api.get("/credits/transactions/").json()
    assert [e["amount"] for e in theirs["items"]] == [7, 500]


def test_transaction_fields(api, user, fund):
    entry = fund(user, 12)
    item = api.get("/credits/transactions/").json()["items"][0]
    assert set(item) == {
        "id",
        "amount",
        "kind",
        "reference",
        "balance_after",
        "memo",
        "created_at",
    }
    assert item["id"] == entry.pk
    assert item["kind"] == "grant"
    assert item["balance_after"] == 12
    assert item["reference"] == entry.reference


def test_transactions_are_paginated_newest_first_with_a_bounded_page(api, user):
    for i in range(105):
        credits_grant(user_id=user.pk, amount=1, reference=f"p-{i}")

    first = api.get("/credits/transactions/").json()
    assert first["count"] == 105
    assert len(first["items"]) == 20
    ids = [e["id"] for e in first["items"]]
    assert ids == sorted(ids, reverse=True)
    assert first["items"][0]["balance_after"] == 105

    second = api.get("/credits/transactions/", page=2).json()
    assert len(second["items"]) == 20
    assert max(e["id"] for e in second["items"]) < min(ids)

    last = api.get("/credits/transactions/", page=6).json()
    assert [e["balance_after"] for e in last["items"]] == [5, 4, 3, 2, 1]

    huge = api.get("/credits/transactions/", page_size=1000).json()
    assert len(huge["items"]) == 100


@pytest.mark.parametrize("params", [{"page": 0}, {"page_size": 0}, {"page": "x"}])
def test_bad_pagination_is_422(api, params):
    assert_error(api.get("/credits/transactions/", **params), 422, "invalid_input")


def test_session_login_reads_the_balance(user, fund):
    fund(user, 9)
    client = Client()
    client.force_login(user)
    response = client.get("/api/v1/credits/balance/")
    assert response.status_code == 200
    assert response.json()["balance"] == 9


# --- spend -------------------------------------------------------------------------


def test_spend_writes_one_entry_and_returns_the_new_balance(api, user, fund):
    fund(user, 50)
    response = api.post("/credits/spend/", {"amount": 20, "reference": "r1", "memo": "a lesson"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["balance"] == 30
    assert body["entry"]["amount"] == -20
    assert body["entry"]["kind"] == "spend"
    assert body["entry"]["balance_after"] == 30
    assert body["entry"]["memo"] == "a lesson"
    assert body["entry"]["reference"] == "spend:r1"
    assert balance_of(user) == 30
    assert api.get("/credits/balance/").json()["balance"] == 30


def test_spend_replay_returns_the_same_entry_and_writes_nothing(api, user, fund):
    fund(user, 50)
    first = api.post("/credits/spend/", {"amount": 20, "reference": "r1"})
    assert first.status_code == 201
    again = api.post("/credits/spend/", {"amount": 20, "reference": "r1"})
    assert again.status_code == 200, again.content
    assert again.json()["entry"] == first.json()["entry"]
    assert again.json()["balance"] == 30
    assert CreditTransaction.objects.filter(kind="spend").count() == 1
    assert balance_of(user) == 30


def test_spend_reference_reused_with_another_amount_is_409(api, user, fund):
    fund(user, 50)
    entry_id = api.post("/credits/spend/", {"amount": 20, "reference": "r1"}).json()["entry"]["id"]
    body = assert_error(
        api.post("/credits/spend/", {"amount": 21, "reference": "r1"}),
        409,
        "credit_reference_conflict",
    )
    assert body["extra"]["entry_id"] == entry_id
    assert balance_of(user) == 30


def test_spend_references_are_per_user(api, other_api, user, other_user, fund):
    fund(user, 10)
    fund(other_user, 10)
    assert api.post("/credits/spend/", {"amount": 4, "reference": "same"}).status_code == 201
    assert other_api.post("/credits/spend/", {"amount": 4, "reference": "same"}).status_code == 201
    assert balance_of(user) == 6
    assert balance_of(other_user) == 6


def test_a_spend_reference_cannot_block_the_systems_own_entries(api, user, fund):
    """A client who spends with reference `order-7` must not stop order 7's fulfilment."""
    fund(user, 10)
    assert api.post("/credits/spend/", {"amount": 3, "reference": "order-7"}).status_code == 201
    entry = credits_grant(user_id=user.pk, amount=100, reference="order-7", kind="purchase")
    assert entry.kind == "purchase"
    assert balance_of(user) == 107


def test_insufficient_balance_is_409_and_writes_nothing(api, user, fund):
    fund(user, 3)
    body = assert_error(
        api.post("/credits/spend/", {"amount": 5, "reference": "r1"}),
        409,
        "insufficient_credits",
    )
    assert body["extra"] == {"balance": 3, "required": 5}
    assert not CreditTransaction.objects.filter(kind="spend").exists()
    assert balance_of(user) == 3


def test_an_account_in_debt_cannot_spend(api, user, fund):
    fund(user, 10)
    credits_debit_refund(user_id=user.pk, amount=15, reference="refund-re_1")
    assert balance_of(user) == -5
    assert_error(
        api.post("/credits/spend/", {"amount": 1, "reference": "r1"}), 409, "insufficient_credits"
    )
    assert balance_of(user) == -5


def test_spend_without_an_account_is_409(api, user):
    assert_error(
        api.post("/credits/spend/", {"amount": 1, "reference": "r1"}), 409, "insufficient_credits"
    )
    assert balance_of(user) == 0


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"reference": "r1"},
        {"amount": 5},
        {"amount": 0, "reference": "r1"},
        {"amount": -5, "reference": "r1"},
        {"amount": "abc", "reference": "r1"},
        {"amount": "5", "reference": "r1"},
        {"amount": 1.5, "reference": "r1"},
        {"amount": 1.0, "reference": "r1"},
        {"amount": True, "reference": "r1"},
        {"amount": None, "reference": "r1"},
        {"amount": 10**12, "reference": "r1"},
        {"amount": 5, "reference": ""},
        {"amount": 5, "reference": "x" * 115},
        {"amount": 5, "reference": 17},
        {"amount": 5, "reference": "r1", "memo": "m" * 501},
        {"amount": 5, "reference": "r1", "user_id": 1},
    ],
)
def test_bad_spend_input_is_422_and_writes_nothing(api, user, fund, body):
    fund(user, 50)
    assert_error(api.post("/credits/spend/", body), 422, "invalid_input")
    assert not CreditTransaction.objects.filter(kind="spend").exists()
    assert balance_of(user) == 50


@pytest.mark.parametrize("raw", [b"{not json", b"", b"[1, 2]", b'"amount"'])
def test_malformed_spend_body_is_422(api, user, fund, raw):
    fund(user, 50)
    assert_error(api.post("/credits/spend/", raw=raw), 422, "invalid_input")
    assert balance_of(user) == 50


# --- grant -------------------------------------------------------------------------


def test_staff_grant_writes_a_grant_by_that_staff_member(staff_api, staff_user, user):
    response = staff_api.post(
        "/credits/grant/", {"user_id": user.pk, "amount": 25, "memo": "goodwill"}
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["balance"] == 25
    assert body["entry"]["kind"] == "grant"
    assert body["entry"]["reference"].startswith("grant:")
    assert len(body["entry"]["reference"]) > len("grant:")
    entry = CreditTransaction.objects.get(pk=body["entry"]["id"])
    assert entry.created_by_id == staff_user.pk
    assert entry.account.user_id == user.pk
    assert balance_of(user) == 25
    assert balance_of(staff_user) == 0


def test_staff_grant_is_a_promotional_lot_or_what_staff_say(staff_api, user):
    from datetime import timedelta

    from django.utils import timezone

    from credits.models import CreditLot

    expires_at = (timezone.now() + timedelta(days=7)).isoformat()
    plain = staff_api.post("/credits/grant/", {"user_id": user.pk, "amount": 5, "memo": "hi"})
    paid = staff_api.post(
        "/credits/grant/",
        {
            "user_id": user.pk,
            "amount": 6,
            "memo": "goodwill",
            "category": "paid",
            "expires_at": expires_at,
        },
    )
    assert (plain.status_code, paid.status_code) == (201, 201), paid.content
    lots = CreditLot.objects.filter(account__user=user).order_by("id")
    assert [(lot.category, lot.expires_at is None) for lot in lots] == [
        ("promotional", True),
        ("paid", False),
    ]


@pytest.mark.parametrize(
    "extra",
    [
        {"category": "gift"},
        {"expires_at": "2020-01-01T00:00:00Z"},
        {"expires_at": "2999-01-01T00:00:00"},
        {"expires_at": "soon"},
    ],
    ids=["category", "past", "naive", "not-a-time"],
)
def test_staff_grant_with_bad_lot_terms_is_422(staff_api, user, extra):
    body = {"user_id": user.pk, "amount": 5, "memo": "hi", **extra}
    assert_error(staff_api.post("/credits/grant/", body), 422, "invalid_input")
    assert balance_of(user) == 0


def test_staff_grants_without_a_reference_are_distinct(staff_api, user):
    for _ in range(2):
        body = {"user_id": user.pk, "amount": 5, "memo": "goodwill"}
        assert staff_api.post("/credits/grant/", body).status_code == 201
    assert balance_of(user) == 10


def test_staff_grant_replay_with_a_reference_writes_once(staff_api, user):
    body = {"user_id": user.pk, "amount": 25, "memo": "goodwill", "reference": "ticket-9"}
    first = staff_api.post("/credits/grant/", body)
    again = staff_api.post("/credits/grant/", body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["entry"]["id"] == first.json()["entry"]["id"]
    assert first.json()["entry"]["reference"] == "grant:ticket-9"
    assert balance_of(user) == 25


def test_negative_grant_is_an_adjustment(staff_api, user, fund):
    fund(user, 40)
    response = staff_api.post(
        "/credits/grant/", {"user_id": user.pk, "amount": -15, "memo": "duplicate credit"}
    )
    assert response.status_code == 201, response.content
    assert response.json()["entry"]["kind"] == "adjustment"
    assert response.json()["balance"] == 25
    assert balance_of(user) == 25


def test_adjustment_may_not_go_below_zero(staff_api, user, fund):
    fund(user, 10)
    assert_error(
        staff_api.post("/credits/grant/", {"user_id": user.pk, "amount": -11, "memo": "oops"}),
        409,
        "insufficient_credits",
    )
    assert not CreditTransaction.objects.filter(kind="adjustment").exists()
    assert balance_of(user) == 10


def test_grant_to_an_unknown_user_is_404(staff_api):
    assert_error(
        staff_api.post("/credits/grant/", {"user_id": 999_999, "amount": 5, "memo": "x"}),
        404,
        "not_found",
    )
    assert not CreditTransaction.objects.exists()


def test_non_staff_cannot_grant(api, user):
    assert_error(
        api.post("/credits/grant/", {"user_id": user.pk, "amount": 1000, "memo": "free money"}),
        403,
        "permission_denied",
    )
    assert balance_of(user) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"amount": 5, "memo": "x"},
        {"user_id": "USER_AS_STRING", "amount": 5, "memo": "x"},
        {"user_id": "not-a-number", "amount": 5, "memo": "x"},
        {"user_id": "USER", "memo": "x"},
        {"user_id": "USER", "amount": 0, "memo": "x"},
        {"user_id": "USER", "amount": 1.5, "memo": "x"},
        {"user_id": "USER", "amount": "5", "memo": "x"},
        {"user_id": "USER", "amount": 5},
        {"user_id": "USER", "amount": 5, "memo": ""},
        {"user_id": "USER", "amount": 5, "memo": "   "},
        {"user_id": "USER", "amount": 5, "memo": "x", "reference": ""},
        {"user_id": "USER", "amount": 5, "memo": "x", "kind": "purchase"},
    ],
)
def test_bad_grant_input_is_422(staff_api, user, body):
    stand_ins = {"USER": user.pk, "USER_AS_STRING": str(user.pk)}
    body = {k: stand_ins.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    assert_error(staff_api.post("/credits/grant/", body), 422, "invalid_input")
    assert not CreditTransaction.objects.exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/credits/balance/"),
        ("get", "/credits/transactions/"),
        ("post", "/credits/spend/"),
        ("post", "/credits/grant/"),
    ],
)
def test_anonymous_is_401(anon_api, method, path):
    body = {"amount": 1, "reference": "r", "user_id": 1, "memo": "m"}
    response = anon_api.get(path) if method == "get" else anon_api.post(path, body)
    assert_error(response, 401, "not_authenticated")
    assert not CreditTransaction.objects.exists()


def test_an_unknown_token_is_401(anon_api):
    anon_api.token = "tg_not-a-real-token"
    assert_error(anon_api.get("/credits/balance/"), 401, "not_authenticated")


def test_support_staff_cannot_grant_through_the_api(support_user, user):
    from credits.models import CreditTransaction
    from tests.conftest import client_for

    resp = client_for(support_user).post(
        "/credits/grant/", {"user_id": user.pk, "amount": 10, "memo": "goodwill"}
    )
    assert resp.status_code == 403
    assert not CreditTransaction.objects.exists()
