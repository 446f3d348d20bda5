"""Input PostgreSQL cannot store, or Python cannot compute with, is a 4xx with nothing stored.

PostgreSQL's text and jsonb refuse U+0000 and lone UTF-16 surrogates, and its
JSON has no NaN or Infinity; Python's JSON reader accepts all of them. A date
at the end of year 9999 parses, then overflows the first time a duration is
added. Each class is sent over HTTP where the client decides what is stored:
an order's `scheduling_data` and `service_data`, a token's name, a 1-on-1's
start, an over-long body, and signed Stripe webhooks.
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.test import Client
from django_q.models import OrmQ

from billing.models import Order, StripeEvent
from bookings.models import Booking
from platform_core.models import ApiToken
from tests.billing.conftest import post_webhook
from tests.bookings.times import at, iso
from tests.conftest import PASSWORD
from tests.platform_core.test_errors import error_body
from tests.stripe_events import event, new_id, payment_intent

pytestmark = pytest.mark.django_db
pytest_plugins = ["tests.bookings.fixtures"]

# JSON text a client can send that PostgreSQL cannot store (each is valid for Python's
# reader): the non-finite numbers, U+0000, and lone surrogates, high and low.
UNSTORABLE = {
    "nan": "NaN",
    "infinity": "Infinity",
    "minus_infinity": "-Infinity",
    "nul": '"a\\u0000b"',
    "high_surrogate": '"\\ud800"',
    "low_surrogate": '"x\\uDC00y"',
}


def raw_body(template: dict, value: str) -> bytes:
    """`template` as JSON with the placeholder string "@" replaced by raw JSON `value`."""
    return json.dumps(template).replace('"@"', value).encode()


@pytest.mark.parametrize("value", UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_unstorable_json_in_scheduling_data_is_422_with_no_order(api, one_on_one, value):
    body = {
        "service_id": one_on_one.pk,
        "amount": "80.00",
        "scheduling_data": {"start_datetime": iso(at(10)), "note": {"deep": ["@"]}},
    }

    response = api.post("/payments/create/", raw=raw_body(body, value))

    error_body(response, 422, "invalid_input")
    assert not Order.objects.exists()
    assert not Booking.objects.exists()


@pytest.mark.parametrize("value", UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_unstorable_json_in_a_gift_card_message_is_422_with_no_order(api, value):
    body = {
        "purchase_type": "gift_card",
        "amount": "25.00",
        "service_data": {"value": 2500, "recipient_name": "Ada", "message": "@"},
    }

    response = api.post("/payments/create/", raw=raw_body(body, value))

    error_body(response, 422, "invalid_input")
    assert not Order.objects.exists()


def test_a_lone_surrogate_in_a_key_is_refused_too(api, one_on_one):
    raw = b'{"service_id": %d, "scheduling_data": {"\\ud800": 1, "start_datetime": "%s"}}' % (
        one_on_one.pk,
        iso(at(10)).encode(),
    )

    error_body(api.post("/payments/create/", raw=raw), 422, "invalid_input")
    assert not Order.objects.exists()


@pytest.mark.parametrize("field", ["name", "username", "password"])
@pytest.mark.parametrize("value", ['"\\ud800"', '"a\\u0000"'], ids=["surrogate", "nul"])
def test_unstorable_text_in_a_token_request_is_422_with_no_token(user, anon_api, field, value):
    body = {"username": user.username, "password": PASSWORD, "name": "laptop", field: "@"}

    response = anon_api.post("/auth/token/", raw=raw_body(body, value))

    error_body(response, 422, "invalid_input")
    assert not ApiToken.objects.exists()


def test_a_good_token_name_with_escaped_text_is_kept(user, anon_api):
    """The control: escapes that PostgreSQL can store (a real pair, an emoji) pass."""
    body = {"username": user.username, "password": PASSWORD, "name": "@"}

    response = anon_api.post("/auth/token/", raw=raw_body(body, '"caf\\u00e9 \\ud83d\\ude00"'))

    assert response.status_code == 201, response.content
    assert ApiToken.objects.get().name == "café 😀"


# --- datetimes at the edge of Python's range -------------------------------------

EDGE_TIMES = [
    "9999-12-31T23:30:00+00:00",  # the slot's end is past year 9999
    "9999-12-31T23:30:00-05:00",  # in UTC it is past year 9999
    "0001-01-01T00:30:00+05:00",  # in UTC it is before year 1
    "9999-06-01T10:00:00+00:00",  # fits, but is not a time anyone books
]


@pytest.mark.parametrize("when", EDGE_TIMES)
def test_a_start_datetime_at_the_edge_of_the_calendar_is_422(api, one_on_one, when):
    body = {
        "service_id": one_on_one.pk,
        "amount": "80.00",
        "scheduling_data": {"start_datetime": when},
    }

    response = api.post("/payments/create/", body)

    error_body(response, 422, "invalid_input")
    assert response.json()["extra"]["field"] == "start_datetime"
    assert not Order.objects.exists()


@pytest.mark.parametrize("when", EDGE_TIMES)
def test_scheduling_a_booking_at_the_edge_of_the_calendar_is_422(api, user, one_on_one, when):
    booking = Booking.objects.create(user=user, service=one_on_one, order_id=1)

    response = api.post(f"/bookings/{booking.pk}/schedule/", {"start_datetime": when})

    error_body(response, 422, "invalid_input")
    booking.refresh_from_db()
    assert booking.start is None


# --- bodies over Django's limit ---------------------------------------------------


def test_an_api_body_over_the_upload_limit_is_413(api):
    raw = b'{"name": "' + b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + b'"}'

    body = error_body(api.post("/payments/create/", raw=raw), 413, "invalid_input")

    assert body["extra"]["limit"] == settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert not Order.objects.exists()


def test_a_token_request_over_the_upload_limit_is_413(anon_api):
    raw = b'{"username": "' + b"x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE + b'"}'

    error_body(anon_api.post("/auth/token/", raw=raw), 413, "invalid_input")


def test_a_form_body_over_the_upload_limit_is_413(api):
    """A form post that Django refuses while parsing fields, not reading the body."""
    fields = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    response = Client().post(
        "/api/v1/payments/create/",
        fields,
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": f"Bearer {api.token}"},
    )

    assert response.status_code in (413, 422), response.content
    assert set(response.json()) == {"code", "message", "extra"}


# --- signed webhooks ---------------------------------------------------------------


def assert_webhook_refused(response) -> None:
    assert 400 <= response.status_code < 500, response.content
    assert response["Content-Type"].startswith("application/json")
    assert set(response.json()) == {"code", "message", "extra"}
    assert not StripeEvent.objects.exists()
    assert not OrmQ.objects.exists()


def signed_event_with(value: str) -> bytes:
    pi = payment_intent(id=new_id("pi"), amount=1000, description="@")
    return raw_body(event("payment_intent.succeeded", pi), value)


@pytest.mark.parametrize(
    "value",
    ['"a\\u0000b"', '"\\ud800"', '"x\\udfffy"', "NaN", "-Infinity"],
    ids=["nul", "high_surrogate", "low_surrogate", "nan", "minus_infinity"],
)
def test_a_signed_webhook_with_unstorable_json_is_refused(value):
    assert_webhook_refused(post_webhook(signed_event_with(value)))


def test_a_signed_webhook_nested_past_the_parser_is_refused():
    depth = 100_000
    body = raw_body(
        event("payment_intent.succeeded", {"id": new_id("pi"), "metadata": "@"}),
        "[" * depth + "]" * depth,
    )

    assert_webhook_refused(post_webhook(body))


def test_a_signed_webhook_nested_deeper_than_postgresql_takes_is_refused():
    depth = 900  # Python reads it; jsonb has its own limit on the server's stack
    body = raw_body(
        event("payment_intent.succeeded", {"id": new_id("pi"), "metadata": "@"}),
        "[" * depth + "]" * depth,
    )

    assert_webhook_refused(post_webhook(body))


@pytest.mark.parametrize("obj", ['"pi_123"', "[]", "42", "null"])
def test_a_signed_webhook_whose_object_is_not_an_object_is_refused(obj):
    evt = event("payment_intent.succeeded", {})
    evt["data"] = {"object": "@"}

    assert_webhook_refused(post_webhook(raw_body(evt, obj)))


@pytest.mark.parametrize("data", ['"x"', "[]", "7"])
def test_a_signed_webhook_whose_data_is_not_an_object_is_refused(data):
    evt = event("payment_intent.succeeded", {})
    evt["data"] = "@"

    assert_webhook_refused(post_webhook(raw_body(evt, data)))


def test_a_signed_webhook_with_a_real_surrogate_pair_and_escapes_is_stored():
    """The control: escapes jsonb can store (a pair, an accent, a tab) are kept as sent."""
    pi = payment_intent(id=new_id("pi"), amount=1000, description="@")
    body = raw_body(event("payment_intent.succeeded", pi), '"caf\\u00e9\\t\\ud83d\\ude00"')

    response = post_webhook(body)

    assert response.status_code == 200, response.content
    stored = StripeEvent.objects.get()
    assert stored.payload["data"]["object"]["description"] == "café\t😀"


@pytest.mark.parametrize("query", ["end=9999-12-31", "start=0001-01-01&end=0001-01-02"])
def test_a_dashboard_period_at_the_edge_of_the_calendar_is_422(staff_api, query):
    response = staff_api.client.get(
        f"/api/v1/admin/dashboard/?{query}", headers={"Authorization": f"Bearer {staff_api.token}"}
    )

    error_body(response, 422, "invalid_input")


def test_numbers_with_a_fraction_in_scheduling_data_are_stored(api, one_on_one, stripe_server):
    """The control for the non-finite numbers: finite ones (read as exact decimals) pass."""
    body = {
        "service_id": one_on_one.pk,
        "amount": "80.00",
        "scheduling_data": {"start_datetime": iso(at(10)), "weight": 1.5, "big": 1e300},
    }

    response = api.post("/payments/create/", body)

    assert response.status_code == 201, response.content
    assert Order.objects.get().metadata["scheduling_data"]


def test_an_idempotency_key_holding_nul_is_422_with_no_order(api):
    body = {"purchase_type": "gift_card", "amount": "25.00", "service_data": {"value": 2500}}

    response = api.post("/payments/create/", body, headers={"Idempotency-Key": "k\x00"})

    error_body(response, 422, "invalid_input")
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    "path",
    [
        "/admin/billing/order/?status=%00",
        "/admin/billing/order/?q=a%00b",
        "/api/v1/payments/orders/?limit=1&x=%00",
        "/api/v1/credits/balance/?x=%00",
    ],
)
def test_a_query_string_holding_nul_is_refused(staff_user, staff_api, path):
    staff_user.is_superuser = True
    staff_user.save()
    client = Client(raise_request_exception=False)
    client.force_login(staff_user)

    response = client.get(path, headers={"Authorization": f"Bearer {staff_api.token}"})

    if path.startswith("/api/"):
        error_body(response, 422, "invalid_input")
    else:
        assert response.status_code == 400, response.content


def test_every_operation_documents_the_422_a_nul_in_its_query_gets():
    from platform_core.api import api as ninja_api

    schema = ninja_api.get_openapi_schema()
    missing = [
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if 422 not in operation["responses"]
    ]
    assert missing == []
