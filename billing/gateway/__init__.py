"""The Stripe gateway: the only package that imports `stripe`.

The rule: nothing Stripe-shaped leaves this package. Callers get the project's
own dataclasses and the project's own errors (`PaymentGatewayError`,
`CardDeclinedError`, …), every write carries an idempotency key derived from
our ids, and the API version is pinned so Stripe's answers keep their shape.

Every request is built as stripe-python's own parameter type for the pinned
version (`stripe.params.PaymentIntentCreateParams`, …), so the type checker
refuses a parameter that version does not have. It speaks to real Stripe or to
the development Stripe (`STRIPE_API_BASE`), which follows the pinned version;
the readers take older event shapes too (an embedded charge in `latest_charge`,
no `amount_received`), since webhook endpoints on older versions send them.

Callers use the package (`from billing import gateway`, then `gateway.refund_create(...)`);
its modules split it by subject: `_client` (the one client, the one call-and-translate
helper, idempotency keys), `errors`, `payment_intents`, `refunds`, `customers`, `cards`
(saved payment methods), `checkout`, `subscriptions`, `portal` and `events` (webhook
verification and the event list reconciliation reads).
"""

from billing.gateway._client import API_VERSION
from billing.gateway.cards import (
    payment_method_attach,
    payment_method_detach,
    payment_method_retrieve,
    payment_methods_list,
    setup_intent_create,
    setup_intent_retrieve,
)
from billing.gateway.checkout import (
    checkout_session_create,
    checkout_session_expire,
)
from billing.gateway.customers import (
    customer_create,
    customer_default_payment_method_set,
    customer_delete,
    customer_retrieve,
)
from billing.gateway.errors import (
    BadSignatureError,
    CardDeclinedError,
    FeatureUnavailableError,
    InvalidPaymentMethodError,
    PaymentGatewayError,
)
from billing.gateway.events import (
    events_since,
    webhook_event_verify,
)
from billing.gateway.payment_intents import (
    LOOKUP_CLOCK_SLACK,
    LOOKUP_MAX_PAGES,
    LOOKUP_WINDOW,
    RESEND_DELAY,
    payment_intent_cancel,
    payment_intent_confirm,
    payment_intent_create,
    payment_intent_find,
    payment_intent_payment_method_set,
    payment_intent_retrieve,
)
from billing.gateway.portal import (
    billing_portal_session_create,
)
from billing.gateway.refunds import (
    RefundReason,
    charge_payment_intent_id,
    refund_create,
    refunds_for_payment_intent,
    refunds_list_for_charge,
)
from billing.gateway.subscriptions import (
    invoices_for_subscription,
    subscription_cancel_at_period_end,
    subscription_cancel_now,
    subscription_create,
    subscription_retrieve,
    subscriptions_for_customer,
)

__all__ = [
    "API_VERSION",
    "LOOKUP_CLOCK_SLACK",
    "LOOKUP_MAX_PAGES",
    "LOOKUP_WINDOW",
    "RESEND_DELAY",
    "BadSignatureError",
    "CardDeclinedError",
    "FeatureUnavailableError",
    "InvalidPaymentMethodError",
    "PaymentGatewayError",
    "RefundReason",
    "billing_portal_session_create",
    "charge_payment_intent_id",
    "checkout_session_create",
    "checkout_session_expire",
    "customer_create",
    "customer_default_payment_method_set",
    "customer_delete",
    "customer_retrieve",
    "events_since",
    "invoices_for_subscription",
    "payment_intent_cancel",
    "payment_intent_confirm",
    "payment_intent_create",
    "payment_intent_find",
    "payment_intent_payment_method_set",
    "payment_intent_retrieve",
    "payment_method_attach",
    "payment_method_detach",
    "payment_method_retrieve",
    "payment_methods_list",
    "refund_create",
    "refunds_for_payment_intent",
    "refunds_list_for_charge",
    "setup_intent_create",
    "setup_intent_retrieve",
    "subscription_cancel_at_period_end",
    "subscription_cancel_now",
    "subscription_create",
    "subscription_retrieve",
    "subscriptions_for_customer",
    "webhook_event_verify",
]
