"""How a webhook delivery is served: a plain view ahead of the API, documented by the API.

Stripe's deliveries are the busiest request, so they skip django-ninja's
routing, parsing and response validation. These tests pin that the path still
behaves and is documented as the API operation it stands for, and that the web
layer adds no database work to the service's own (no session, no token).
"""

from __future__ import annotations

import logging

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import resolve, reverse

import billing.api.webhooks as webhooks
from billing.models import StripeEvent
from platform_core.api import api, stripe_webhook
from tests.billing.conftest import WEBHOOK_PATH, post_webhook
from tests.stripe_events import event, new_id

pytestmark = pytest.mark.django_db


def customer_created() -> dict:
    return event("customer.created", {"id": new_id("cus"), "object": "customer"})


def test_the_path_is_served_by_the_plain_view_and_named_by_the_api():
    assert resolve(WEBHOOK_PATH).func is stripe_webhook
    assert reverse("api-1:payments_webhook") == WEBHOOK_PATH


def test_the_openapi_schema_still_documents_the_delivery():
    operation = api.get_openapi_schema()["paths"][WEBHOOK_PATH]["post"]
    assert operation["operationId"] == "billing_api_webhooks_payments_webhook"
    assert {str(status) for status in operation["responses"]} == {"200", "400", "413", "422"}
    assert "security" not in operation or operation["security"] == []


def test_a_delivery_answers_as_the_operation_does():
    evt = customer_created()
    resp = post_webhook(evt, client=Client(enforce_csrf_checks=True))
    assert resp.status_code == 200
    assert resp["Content-Type"].startswith("application/json")
    assert resp.json() == {"received": True, "duplicate": False, "id": evt["id"]}
    assert post_webhook(evt).json() == {"received": True, "duplicate": True, "id": evt["id"]}
    assert StripeEvent.objects.filter(stripe_id=evt["id"]).count() == 1


def test_the_web_layer_adds_no_statement_to_the_services(monkeypatch):
    inside: list[int] = []
    store = webhooks.event_store

    def counted(**kwargs):
        with CaptureQueriesContext(connection) as ctx:
            result = store(**kwargs)
        inside.append(len(ctx.captured_queries))
        return result

    monkeypatch.setattr(webhooks, "event_store", counted)
    client = Client()
    client.cookies["sessionid"] = "a-session-the-webhook-never-reads"
    with CaptureQueriesContext(connection) as ctx:
        resp = post_webhook(customer_created(), client=client)

    assert resp.status_code == 200, resp.content
    assert len(ctx.captured_queries) == inside[0]


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_other_methods_are_405_in_the_error_shape(method):
    resp = getattr(Client(), method)(WEBHOOK_PATH)
    assert resp.status_code == 405
    assert resp["Allow"] == "POST"
    assert resp.json()["code"] == "method_not_allowed"
    assert resp.json()["extra"] == {"allowed": ["POST"]}


def test_a_failure_is_a_logged_500_in_the_error_shape_so_stripe_retries(monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(webhooks, "event_store", broken)
    with caplog.at_level(logging.ERROR, logger="platform_core.api"):
        resp = post_webhook(customer_created())

    assert resp.status_code == 500
    body = resp.json()
    assert set(body) == {"code", "message", "extra"}
    assert body["code"] == "internal_error"
    assert "database" not in body["message"]
    assert any("RuntimeError" in (r.exc_text or "") or r.exc_info for r in caplog.records)
