"""Bearer tokens and the session: issuing, storing hashed, accepting, refusing.

CSRF tests use `Client(enforce_csrf_checks=True)`: Django's plain test client
skips CSRF, which would hide a session auth that ran before the bearer auth.
"""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from platform_core.auth import api_token_create, api_token_lookup, api_token_revoke
from platform_core.models import ApiToken
from tests.conftest import PASSWORD, ApiClient
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ORDERS = "/api/v1/payments/orders/"
CANCEL_MISSING_ORDER = "/api/v1/payments/orders/999999/cancel/"
CSRF_SECRET = "abcdefghijklmnopqrstuvwxyz012345"  # 32 characters, as Django's cookie holds


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"code", "message", "extra"}
    assert body["code"] == code
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["extra"], dict)
    return body


# --- POST /api/v1/auth/token/ -------------------------------------------------------


def test_right_password_gives_a_token_that_works(user, anon_api):
    response = anon_api.post("/auth/token/", {"username": user.username, "password": PASSWORD})

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["token"].startswith("tg_")
    assert body["token_type"] == "Bearer"
    assert body["token"].startswith(body["prefix"])
    assert ApiClient(body["token"]).get("/payments/orders/").status_code == 200


def test_the_raw_token_is_stored_only_as_its_digest(user, anon_api):
    raw = anon_api.post(
        "/auth/token/", {"username": user.username, "password": PASSWORD, "name": "laptop"}
    ).json()["token"]

    row = ApiToken.objects.get(user=user)
    assert row.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert row.name == "laptop"
    for token_row in ApiToken.objects.all():
        for field in ApiToken._meta.concrete_fields:
            assert raw not in str(getattr(token_row, field.attname)), field.name


def test_each_request_gets_a_new_token(user, anon_api):
    body = {"username": user.username, "password": PASSWORD}
    first = anon_api.post("/auth/token/", body).json()["token"]
    second = anon_api.post("/auth/token/", body).json()["token"]

    assert first != second
    assert ApiToken.objects.filter(user=user).count() == 2


@pytest.mark.parametrize(
    "credentials",
    [
        {"password": "wrong-password"},
        {"password": ""},
        {"username": "nobody-by-this-name"},
    ],
    ids=["wrong-password", "empty-password", "unknown-user"],
)
def test_wrong_credentials_are_401(user, anon_api, credentials):
    body = {"username": user.username, "password": PASSWORD, **credentials}

    response = anon_api.post("/auth/token/", body)

    assert_error(response, 401, "not_authenticated")
    assert not ApiToken.objects.exists()


def test_an_inactive_user_gets_no_token(anon_api):
    inactive = UserFactory(is_active=False)

    response = anon_api.post("/auth/token/", {"username": inactive.username, "password": PASSWORD})

    assert_error(response, 401, "not_authenticated")
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize(
    "extra",
    [{"is_staff": True}, {"user_id": 1}],
    ids=["is_staff", "user_id"],
)
def test_unknown_fields_are_422(user, anon_api, extra):
    response = anon_api.post(
        "/auth/token/", {"username": user.username, "password": PASSWORD, **extra}
    )

    assert_error(response, 422, "invalid_input")
    assert not ApiToken.objects.exists()


def test_missing_password_is_422(user, anon_api):
    response = anon_api.post("/auth/token/", {"username": user.username})

    assert_error(response, 422, "invalid_input")


# --- bearer tokens on other endpoints -------------------------------------------------


def test_a_bearer_token_authenticates_a_get(api):
    response = api.get("/payments/orders/")

    assert response.status_code == 200, response.content


def test_using_a_token_records_when(user, api):
    assert ApiToken.objects.get(user=user).last_used_at is None

    api.get("/payments/orders/")

    assert ApiToken.objects.get(user=user).last_used_at is not None


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer tg_not-a-real-token",
        "Bearer not-even-the-prefix",
        "Bearer ",
        "Token tg_whatever",
    ],
    ids=["none", "garbage", "no-prefix", "empty", "other-scheme"],
)
def test_without_a_valid_token_a_get_is_401(user, authorization):
    headers = {"Authorization": authorization} if authorization else {}

    response = Client().get(ORDERS, headers=headers)

    assert_error(response, 401, "not_authenticated")


def test_a_revoked_token_is_refused(user):
    raw, token = api_token_create(username=user.username, password=PASSWORD)
    client = ApiClient(raw)
    assert client.get("/payments/orders/").status_code == 200

    api_token_revoke(token=token)

    assert_error(client.get("/payments/orders/"), 401, "not_authenticated")


def test_a_deactivated_users_token_is_refused(user, api):
    user.is_active = False
    user.save(update_fields=["is_active"])

    assert_error(api.get("/payments/orders/"), 401, "not_authenticated")


def test_revoking_one_token_leaves_the_others(user):
    raw_kept, _ = api_token_create(username=user.username, password=PASSWORD)
    _, revoked = api_token_create(username=user.username, password=PASSWORD)

    api_token_revoke(token=revoked)

    assert ApiClient(raw_kept).get("/payments/orders/").status_code == 200


# --- the session, and CSRF ------------------------------------------------------------


def test_the_session_authenticates_a_get(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    assert client.get(ORDERS).status_code == 200


def test_a_session_post_without_csrf_is_403(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    response = client.post(CANCEL_MISSING_ORDER, content_type="application/json")

    assert_error(response, 403, "permission_denied")


def test_a_session_post_with_csrf_goes_through(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.cookies["csrftoken"] = CSRF_SECRET

    response = client.post(
        CANCEL_MISSING_ORDER, content_type="application/json", headers={"X-CSRFToken": CSRF_SECRET}
    )

    assert_error(response, 404, "not_found")


def test_a_bearer_post_is_not_subject_to_csrf(api):
    client = Client(enforce_csrf_checks=True)

    response = client.post(
        CANCEL_MISSING_ORDER,
        content_type="application/json",
        headers={"Authorization": f"Bearer {api.token}"},
    )

    # 403 here would mean the session auth (and its CSRF check) ran first.
    assert_error(response, 404, "not_found")


def test_a_bearer_post_wins_over_a_logged_in_session_without_csrf(user, other_user):
    raw, _ = api_token_create(username=user.username, password=PASSWORD)
    client = Client(enforce_csrf_checks=True)
    client.force_login(other_user)

    response = client.post(
        CANCEL_MISSING_ORDER,
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )

    assert_error(response, 404, "not_found")


@pytest.mark.parametrize(
    "authorization", [None, "Bearer tg_not-a-real-token"], ids=["no-token", "garbage"]
)
def test_an_unauthenticated_post_is_401_even_with_csrf_enforced(user, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    client = Client(enforce_csrf_checks=True)

    response = client.post(CANCEL_MISSING_ORDER, content_type="application/json", headers=headers)

    assert_error(response, 401, "not_authenticated")


# --- the bearer lookup ------------------------------------------------------------------


def test_a_bearer_request_authenticates_with_one_statement(user, api):
    """One query for the token and its user; the session is not read, even when the
    browser that sends the token also holds a logged-in session cookie."""
    browser = Client()
    browser.force_login(user)
    headers = {"Authorization": f"Bearer {api.token}"}
    browser.get("/api/v1/credits/balance/", headers=headers)  # the token's first use noted

    with CaptureQueriesContext(connection) as ctx:
        response = browser.get("/api/v1/credits/balance/", headers=headers)

    assert response.status_code == 200, response.content
    token_lookups = [q for q in ctx.captured_queries if "platform_core_apitoken" in q["sql"]]
    assert len(token_lookups) == 1
    assert "auth_user" in token_lookups[0]["sql"]  # the user comes with it
    assert not [q for q in ctx.captured_queries if "django_session" in q["sql"]]


def test_the_looked_up_token_and_user_are_what_the_orm_reads(user):
    raw, _ = api_token_create(username=user.username, password=PASSWORD, name="laptop")

    found = api_token_lookup(raw)

    expected = ApiToken.objects.select_related("user").get(user=user)
    for field in ApiToken._meta.concrete_fields:
        assert getattr(found, field.attname) == getattr(expected, field.attname), field.name
    for field in type(user)._meta.concrete_fields:
        assert getattr(found.user, field.attname) == getattr(expected.user, field.attname)
    assert not found._state.adding and not found.user._state.adding
    assert found.user.is_authenticated


def test_nothing_is_remembered_between_requests(user):
    """Each request reads the token again: revoking it, or deactivating or demoting its
    user, counts from the very next request, in every web process."""
    raw, token = api_token_create(username=user.username, password=PASSWORD)
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    assert api_token_lookup(raw).user.is_staff
    user.is_staff = False
    user.save(update_fields=["is_staff"])
    assert not api_token_lookup(raw).user.is_staff
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert api_token_lookup(raw) is None
    user.is_active = True
    user.save(update_fields=["is_active"])
    assert api_token_lookup(raw) is not None
    api_token_revoke(token=token)
    assert api_token_lookup(raw) is None
    assert api_token_lookup(raw + "x") is None
