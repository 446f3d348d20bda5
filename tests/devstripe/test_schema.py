"""The development Stripe's judge of requests: stripe-python's parameter types for the
pinned API version, applied to form-encoded requests as Stripe decodes them."""

from __future__ import annotations

import pytest
import requests

from devstripe import schema


def _violations(method: str, path: str, pairs: list[tuple[str, str]]) -> list[str]:
    return schema.violations(method, path, schema.decode(pairs))


def test_requests_map_to_their_parameter_types():
    assert schema.params_for("POST", "/v1/payment_intents").__name__ == (
        "PaymentIntentCreateParams"
    )
    assert schema.params_for("POST", "/v1/payment_intents/pi_1/confirm").__name__ == (
        "PaymentIntentConfirmParams"
    )
    assert schema.params_for("GET", "/v1/payment_intents").__name__ == "PaymentIntentListParams"
    assert schema.params_for("GET", "/v1/invoice_payments").__name__ == ("InvoicePaymentListParams")
    assert schema.params_for("POST", "/v1/checkout/sessions").__name__ == "SessionCreateParams"
    assert schema.params_for("DELETE", "/v1/payment_intents/pi_1") is None


def test_decode_reads_nested_and_indexed_keys():
    assert schema.decode(
        [("a[b][0]", "x"), ("a[b][1]", "y"), ("c[]", "z"), ("metadata[k]", "v")]
    ) == {"a": {"b": {"0": "x", "1": "y"}}, "c": {"0": "z"}, "metadata": {"k": "v"}}


def test_a_valid_request_passes():
    assert (
        _violations(
            "POST",
            "/v1/payment_intents",
            [
                ("amount", "1500"),
                ("currency", "eur"),
                ("description", "Ten credits"),
                ("automatic_payment_methods[enabled]", "true"),
                ("automatic_payment_methods[allow_redirects]", "never"),
                ("metadata[order_id]", "7"),
                ("expand[0]", "latest_charge"),
            ],
        )
        == []
    )
    assert (
        _violations("GET", "/v1/payment_intents", [("created[gte]", "1"), ("limit", "100")]) == []
    )
    assert (
        _violations("POST", "/v1/subscriptions", [("customer", "cus_1"), ("items[0][price]", "p")])
        == []
    )


def test_an_unknown_parameter_fails_and_is_named():
    found = _violations(
        "POST",
        "/v1/payment_intents",
        [("amount", "1500"), ("currency", "eur"), ("payment_method_types[0]", "card")],
    )
    assert found == ["payment_method_types: unknown parameter"]
    nested = _violations(
        "POST",
        "/v1/payment_intents",
        [
            ("amount", "1"),
            ("currency", "eur"),
            ("automatic_payment_methods[enabled]", "true"),
            ("automatic_payment_methods[redirects]", "never"),
        ],
    )
    assert nested == ["automatic_payment_methods[redirects]: unknown parameter"]


def test_a_wrong_type_fails():
    assert _violations("POST", "/v1/refunds", [("payment_intent", "pi_1"), ("amount", "1.5")]) == [
        "amount: expected an integer, got '1.5'"
    ]
    assert _violations(
        "POST", "/v1/payment_intents", [("amount", "1"), ("currency", "eur"), ("confirm", "yes")]
    ) == ["confirm: expected a boolean, got 'yes'"]
    assert _violations(
        "POST", "/v1/payment_intents", [("amount", "1"), ("currency", "eur"), ("metadata", "x")]
    ) == ["metadata: invalid value 'x', expected a hash or a hash"]


def test_a_value_outside_an_enum_fails():
    found = _violations("POST", "/v1/refunds", [("payment_intent", "pi_1"), ("reason", "bored")])
    assert len(found) == 1 and found[0].startswith("reason: invalid value 'bored'")
    assert (
        _violations(
            "POST", "/v1/refunds", [("payment_intent", "pi_1"), ("reason", "requested_by_customer")]
        )
        == []
    )
    listed = _violations(
        "POST",
        "/v1/setup_intents",
        [("allowed_payment_method_types[0]", "card"), ("allowed_payment_method_types[1]", "cash")],
    )
    assert len(listed) == 1 and listed[0].startswith("allowed_payment_method_types[1]: invalid")


def test_a_missing_required_parameter_fails():
    assert _violations("POST", "/v1/payment_intents", [("amount", "1")]) == [
        "currency: missing required parameter"
    ]


def test_an_endpoint_the_version_lacks_fails():
    assert _violations("POST", "/v1/charges/ch_1/refunds/re_1/nope", []) == [
        "POST /v1/charges/ch_1/refunds/re_1/nope: no such endpoint at this API version"
    ]


def test_the_development_stripe_refuses_and_records_what_stripe_would_refuse(stripe_server):
    resp = requests.post(
        stripe_server.base + "/v1/payment_intents",
        data={"amount": "1500", "currency": "eur", "payment_method_types[0]": "card"},
        headers={"Authorization": "Bearer sk_test_localstripe"},
        timeout=10,
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "payment_method_types"
    assert "payment_method_types" in resp.json()["error"]["message"]
    assert stripe_server.violations() == [
        {
            "method": "POST",
            "path": "/v1/payment_intents",
            "violation": "payment_method_types: unknown parameter",
        }
    ]
    assert stripe_server.violations() == []


@pytest.mark.parametrize("version", ["2017-08-15"])
def test_another_stripe_version_is_a_violation(stripe_server, version):
    resp = requests.get(
        stripe_server.base + "/v1/customers",
        headers={"Authorization": "Bearer sk_test_localstripe", "Stripe-Version": version},
        timeout=10,
    )
    assert resp.status_code == 400
    (found,) = stripe_server.violations()
    assert found["violation"].startswith("Stripe-Version: '2017-08-15'")
