"""The error model over HTTP: every failure is `{code, message, extra}` with its status."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

ERROR_KEYS = {"code", "message", "extra"}


def error_body(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["code"] == code
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["extra"], dict)
    return body


@pytest.mark.parametrize("raw", [b"{not json", b'{"is_credit_purchase": tru', b"\xff\xfe"])
def test_malformed_json_is_422(api, raw):
    body = error_body(api.post("/payments/create/", raw=raw), 422, "invalid_input")

    assert "JSON" in body["message"]


@pytest.mark.parametrize("raw", [b"[]", b'[{"is_credit_purchase": true}]', b"null", b"42"])
def test_json_that_is_not_an_object_is_422(api, raw):
    error_body(api.post("/payments/create/", raw=raw), 422, "invalid_input")


def test_deeply_nested_json_is_422_like_any_unreadable_body(api):
    raw = b"[" * 100_000 + b"]" * 100_000

    body = error_body(api.post("/payments/create/", raw=raw), 422, "invalid_input")

    assert "JSON" in body["message"]


@pytest.mark.parametrize("path", ["/api/v1/no-such-thing/", "/api/v1/payments/no-such-thing/"])
def test_an_unknown_route_is_404(api, path):
    response = Client().get(path, headers={"Authorization": f"Bearer {api.token}"})

    assert response.status_code == 404


def test_unauthenticated_is_401_with_the_error_shape(anon_api):
    error_body(anon_api.get("/payments/orders/"), 401, "not_authenticated")
    error_body(anon_api.post("/payments/create/", {}), 401, "not_authenticated")


def test_anothers_order_looks_absent(api, other_api):
    error_body(other_api.get("/payments/orders/999999/"), 404, "not_found")


def test_a_wrong_method_is_405_with_the_error_shape(api):
    response = api.get("/payments/create/")

    assert response.status_code == 405
    assert response["Content-Type"].startswith("application/json"), response.content
    assert set(response.json()) == ERROR_KEYS


ERROR_CASES = [
    # (who, method, path, JSON body or raw bytes, status, code)
    ("user", "post", "/payments/create/", b"{not json", 422, "invalid_input"),
    ("user", "post", "/payments/create/", b"[]", 422, "invalid_input"),
    ("user", "post", "/payments/create/", b"", 422, "invalid_input"),
    ("user", "post", "/payments/create/", {}, 422, "invalid_input"),
    ("user", "post", "/payments/create/", {"no_such_field": 1}, 422, "invalid_input"),
    (
        "user",
        "post",
        "/payments/create/",
        {"purchase_type": "no-such-type"},
        422,
        "unknown_purchase_type",
    ),
    ("user", "get", "/payments/orders/?limit=abc", None, 422, "invalid_input"),
    ("user", "get", "/payments/orders/999999/", None, 404, "not_found"),
    ("user", "post", "/payments/orders/999999/cancel/", {}, 404, "not_found"),
    ("anon", "get", "/payments/orders/", None, 401, "not_authenticated"),
    ("anon", "post", "/payments/create/", {}, 401, "not_authenticated"),
    ("anon", "post", "/auth/token/", {"username": "x", "password": "y"}, 401, "not_authenticated"),
    ("anon", "post", "/auth/token/", {"username": "x"}, 422, "invalid_input"),
]


@pytest.mark.parametrize(
    ("who", "method", "path", "body", "status", "code"),
    ERROR_CASES,
    ids=[f"{c[1]} {c[2]} {c[3]!r:.20} -> {c[4]}" for c in ERROR_CASES],
)
def test_every_error_has_exactly_code_message_extra(
    api, anon_api, who, method, path, body, status, code
):
    client = api if who == "user" else anon_api
    if method == "get":
        response = client.get(path)
    elif isinstance(body, bytes):
        response = client.post(path, raw=body)
    else:
        response = client.post(path, body)

    error_body(response, status, code)


def test_a_good_token_request_is_not_an_error(user, anon_api):
    # The control for the error cases above: the same client and route succeed.
    response = anon_api.post("/auth/token/", {"username": user.username, "password": PASSWORD})

    assert response.status_code == 201
    assert "code" not in response.json()


def test_the_interactive_api_docs_need_no_internet(anon_api):
    """Swagger UI comes from the project's own static files, never a CDN."""
    from django.contrib.staticfiles import finders

    page = anon_api.client.get("/api/v1/docs")

    assert page.status_code == 200
    html = page.content.decode()
    assert "cdn.jsdelivr.net" not in html
    assert "/static/ninja/swagger-ui-bundle.js" in html
    assert finders.find("ninja/swagger-ui-bundle.js")
