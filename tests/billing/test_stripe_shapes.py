"""The readers of Stripe objects against the pinned API version's own object types.

For each object type Tollgate reads, the fields its reader in billing/stripe_objects.py
touches are recorded (by reading through a dict that notes every key asked for) and
checked against the class annotations stripe-python declares for the pinned version
(`stripe.PaymentIntent`, …): a field the version does not have must be one the reader
reads only for older shapes, and such a field must really be gone from the version.
Then the reader must give the same result on Stripe's own fixture (the pinned shape)
and on the same object in an older shape (localstripe's 2017 one, or an older API
version's webhook).
"""

from __future__ import annotations

import copy
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, ForwardRef, Union

import pytest
import stripe
from stripe._list_object import ListObject

from billing import stripe_objects as so
from tests.stripe_events import fixture, payment_intent

Path = tuple[str, ...]


class Recording(dict):
    """A dict that notes the path of every key read from it (and from what it holds)."""

    def __init__(self, data: dict[str, Any], seen: set[Path], at: Path = ()) -> None:
        super().__init__(data)
        self._seen = seen
        self._at = at

    def _wrap(self, key: str, value: Any) -> Any:
        path = (*self._at, key)
        self._seen.add(path)
        if isinstance(value, dict):
            return Recording(value, self._seen, path)
        if isinstance(value, list):
            return [
                Recording(v, self._seen, (*path, "[]")) if isinstance(v, dict) else v for v in value
            ]
        return value

    def get(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        self._seen.add((*self._at, key))
        return default

    def __getitem__(self, key: str) -> Any:
        return self._wrap(key, super().__getitem__(key))

    def items(self):  # metadata: the values are read, not named fields
        return dict(self).items()


def fields_read(reader: Callable[[dict[str, Any]], Any], *objs: dict[str, Any]) -> set[Path]:
    seen: set[Path] = set()
    for obj in objs:
        reader(Recording(copy.deepcopy(obj), seen))
    # A path read under a field that held a scalar or an id says nothing more.
    return seen


# --- the pinned version's object types ---------------------------------------------------


def _annotations(cls: type) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        out.update(getattr(base, "__annotations__", {}))
    return out


def _resolve(tp: Any, owner: type) -> list[Any]:
    """The Stripe object classes (or `ListObject` of one) a field's type can hold."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return [c for arm in typing.get_args(tp) for c in _resolve(arm, owner)]
    if origin is ListObject:
        return [("list", _resolve(typing.get_args(tp)[0], owner))]
    if isinstance(tp, ForwardRef | str):
        name = tp.__forward_arg__ if isinstance(tp, ForwardRef) else tp
        module = sys.modules[owner.__module__]
        found = getattr(stripe, name, None) or getattr(module, name, None)
        return [found] if isinstance(found, type) else []
    if isinstance(tp, type) and issubclass(tp, stripe.StripeObject):
        return [tp]
    return []


def declared(cls: type, path: Path) -> bool:
    """Whether `path` (such as `items.data.[].price`) is a field of `cls` at the pinned
    version. Below a field that holds no Stripe object (an id, metadata) all is taken."""
    current: list[Any] = [cls]
    for i, segment in enumerate(path):
        nxt: list[Any] = []
        for c in current:
            if isinstance(c, tuple):  # a list object of c[1]
                if segment in ("has_more", "url", "object"):
                    return True
                if segment == "data" and i + 1 < len(path) and path[i + 1] == "[]":
                    nxt.extend(("items", x) for x in c[1])
                elif segment == "data":
                    return True
            elif c == "items" or (isinstance(c, tuple) and c[0] == "items"):
                pass
            elif isinstance(c, type):
                fields = _annotations(c)
                if segment == "id" and "id" in fields:
                    return True
                if segment in fields:
                    resolved = _resolve(fields[segment], c)
                    if not resolved:
                        return True  # a scalar, an id or a hash: nothing below to judge
                    nxt.extend(resolved)
        if segment == "[]":
            nxt = [x[1] for x in current if isinstance(x, tuple) and x[0] == "items"]
        if not nxt:
            return False
        current = nxt
    return True


def undeclared(cls: type, read: set[Path]) -> set[Path]:
    """The fields read that the pinned `cls` lacks, each by its shortest such path."""
    return {
        next(p[: i + 1] for i in range(len(p)) if not declared(cls, p[: i + 1]))
        for p in read
        if not declared(cls, p)
    }


# --- one case per object type -----------------------------------------------------------


def _expanded(obj_id: str, kind: str) -> dict[str, Any]:
    return {"id": obj_id, "object": kind}


def _pi_cases():
    pinned = payment_intent(id="pi_shape", amount=1500, currency="eur", latest_charge="ch_shape")
    old = copy.deepcopy(pinned)
    old.pop("amount_received")
    old["latest_charge"] = {**fixture("charge"), "id": "ch_shape", "payment_intent": "pi_shape"}
    declined = payment_intent(id="pi_declined", amount=900, status="requires_payment_method")
    old_declined = {k: v for k, v in declined.items() if k != "amount_received"}
    return [(pinned, old), (declined, old_declined)]


def _refund_cases():
    pinned = {**fixture("refund"), "id": "re_shape", "charge": "ch_1", "payment_intent": "pi_1"}
    old = {
        **pinned,
        "charge": _expanded("ch_1", "charge"),
        "payment_intent": _expanded("pi_1", "payment_intent"),
    }
    return [(pinned, old)]


def _customer_cases():
    pinned = fixture("customer")
    pinned["invoice_settings"]["default_payment_method"] = "pm_1"
    old = copy.deepcopy(pinned)
    old["invoice_settings"]["default_payment_method"] = _expanded("pm_1", "payment_method")
    return [(pinned, old)]


def _payment_method_cases():
    pinned = {**fixture("payment_method"), "customer": "cus_1"}
    pinned["card"] = {**pinned["card"], "brand": "visa", "last4": "4242"}
    return [(pinned, {**pinned, "customer": _expanded("cus_1", "customer")})]


def _setup_intent_cases():
    pinned = {
        **fixture("setup_intent"),
        "id": "seti_1",
        "customer": "cus_1",
        "payment_method": "pm_1",
        "client_secret": "seti_1_secret",
    }
    old = {
        **pinned,
        "customer": _expanded("cus_1", "customer"),
        "payment_method": _expanded("pm_1", "payment_method"),
    }
    return [(pinned, old)]


def _checkout_cases():
    pinned = {
        **fixture("checkout.session"),
        "payment_intent": "pi_1",
        "customer": "cus_1",
        "subscription": None,
        "amount_total": 1500,
        "client_reference_id": "order-1",
    }
    old = {
        **pinned,
        "payment_intent": _expanded("pi_1", "payment_intent"),
        "customer": _expanded("cus_1", "customer"),
    }
    return [(pinned, old)]


def _subscription_cases():
    pinned = fixture("subscription")
    pinned.update(customer="cus_1", cancel_at_period_end=True)
    pinned.pop("current_period_end", None)
    pinned.pop("current_period_start", None)
    item = pinned["items"]["data"][0]
    old = copy.deepcopy(pinned)
    old_item = old["items"]["data"][0]
    plan = {"id": item["price"]["id"], "object": "plan", "amount": 1900, "interval": "month"}
    old.update(
        current_period_start=old_item.pop("current_period_start"),
        current_period_end=old_item.pop("current_period_end"),
        plan=plan,
    )
    old_item.pop("price")
    old_item["plan"] = plan
    oldest = copy.deepcopy(old)  # before items carried their plan
    oldest["items"]["data"][0].pop("plan")
    return [(pinned, old), (pinned, oldest)]


def _charge_cases():
    refund = {**fixture("refund"), "id": "re_1", "charge": "ch_1", "payment_intent": "pi_1"}
    pinned = {**fixture("charge"), "id": "ch_1", "payment_intent": "pi_1"}
    pinned["refunds"] = {"object": "list", "data": [refund], "has_more": False, "url": "/v1/x"}
    old = copy.deepcopy(pinned)
    old["refunds"]["data"][0].update(charge=None, payment_intent=None)  # 2017: filled in
    return [(pinned, old)]


CASES = {
    "payment_intent": (stripe.PaymentIntent, so.payment_intent_from_payload, _pi_cases, set()),
    "refund": (stripe.Refund, so.refund_from_payload, _refund_cases, set()),
    "customer": (stripe.Customer, so.customer_from_payload, _customer_cases, set()),
    "payment_method": (
        stripe.PaymentMethod,
        so.payment_method_from_payload,
        _payment_method_cases,
        set(),
    ),
    "setup_intent": (stripe.SetupIntent, so.setup_intent_from_payload, _setup_intent_cases, set()),
    "checkout.session": (
        stripe.checkout.Session,
        so.checkout_session_from_payload,
        _checkout_cases,
        set(),
    ),
    "subscription": (
        stripe.Subscription,
        so.subscription_from_payload,
        _subscription_cases,
        {("current_period_end",), ("plan",)},
    ),
    "charge": (stripe.Charge, so.refunds_from_charge_payload, _charge_cases, set()),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_reader_reads_only_fields_of_the_pinned_version_or_declared_older_ones(name):
    cls, reader, cases, older = CASES[name]
    read = fields_read(reader, *(obj for pair in cases() for obj in pair))
    assert read, "the reader read nothing"
    unknown = undeclared(cls, read)
    assert unknown == older, f"{name}: fields outside the pinned {cls.__name__} type"
    # What is read for older shapes only is truly gone from the pinned version.
    assert not any(declared(cls, p) for p in older)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_reader_gives_the_same_on_the_pinned_and_an_older_shape(name):
    _, reader, cases, _ = CASES[name]
    for pinned, old in cases():
        assert reader(pinned) == reader(old)


def test_the_recorder_and_the_type_check_catch_a_field_the_version_lacks():
    """The check above can fail: a reader of a field gone from the version is caught."""

    def legacy_reader(obj: dict[str, Any]) -> Any:
        return obj.get("charges"), obj.get("amount")

    read = fields_read(legacy_reader, fixture("payment_intent"))
    assert {p for p in read if not declared(stripe.PaymentIntent, p)} == {("charges",)}
    assert declared(stripe.Subscription, ("items", "data", "[]", "current_period_end"))
    assert not declared(stripe.Subscription, ("items", "data", "[]", "nonsense"))
    assert declared(stripe.Invoice, ("parent", "subscription_details", "subscription"))
    assert not declared(stripe.Invoice, ("paid",))


def test_readers_read_stripes_own_values():
    intent = so.payment_intent_from_payload(
        payment_intent(id="pi_v", amount=1500, currency="EUR", latest_charge="ch_v")
    )
    assert (intent.amount_received, intent.latest_charge_id, intent.currency) == (
        1500,
        "ch_v",
        "eur",
    )
    old = so.payment_intent_from_payload(
        {"id": "pi_o", "amount": 700, "status": "succeeded", "latest_charge": {"id": "ch_o"}}
    )
    assert (old.amount_received, old.latest_charge_id) == (700, "ch_o")
    sub = so.subscription_from_payload({**fixture("subscription"), "customer": "cus_1"})
    item = fixture("subscription")["items"]["data"][0]
    assert sub.price_id == item["price"]["id"]
    assert sub.current_period_end == item["current_period_end"]
    assert so.refunds_from_charge_payload({**fixture("charge"), "refunds": None}) is None


# --- invoices -------------------------------------------------------------------------------


# Read for older API versions only: the invoice's own subscription, paid flag, charge and
# PaymentIntent, and a line's `type` (the pinned version says it in the line's `parent`).
INVOICE_OLDER = {
    ("subscription",),
    ("paid",),
    ("charge",),
    ("payment_intent",),
    ("lines", "data", "[]", "type"),
}


def _invoice_pinned() -> dict[str, Any]:
    obj = fixture("invoice")
    obj.update(
        id="in_1",
        status="paid",
        amount_paid=1900,
        currency="usd",
        customer="cus_1",
        billing_reason="subscription_cycle",
        parent={
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"subscription": "sub_1", "metadata": None},
        },
    )
    for gone in ("subscription", "paid", "charge", "payment_intent"):
        obj.pop(gone, None)
    return obj


def _invoice_old() -> dict[str, Any]:
    obj = _invoice_pinned()
    obj.pop("parent")
    obj.update(subscription="sub_1", paid=True, charge="ch_1", payment_intent="pi_1")
    return obj


def test_the_invoice_reader_reads_only_pinned_fields_or_declared_older_ones():
    read = fields_read(so.invoice_from_payload, _invoice_pinned(), _invoice_old())
    unknown = undeclared(stripe.Invoice, read)
    assert unknown == INVOICE_OLDER
    assert not any(declared(stripe.Invoice, p) for p in INVOICE_OLDER)


def test_the_invoice_reader_gives_the_same_on_both_shapes_for_what_both_carry():
    pinned = so.invoice_from_payload(_invoice_pinned())
    old = so.invoice_from_payload(_invoice_old())
    same = ("id", "status", "paid", "amount_paid", "currency", "customer_id", "subscription_id")
    assert {f: getattr(pinned, f) for f in same} == {f: getattr(old, f) for f in same}
    assert (pinned.subscription_id, pinned.paid) == ("sub_1", True)
    # The older shape names its payment on the invoice; the pinned one in its payments.
    assert (old.payment_intent_id, old.charge_id) == ("pi_1", "ch_1")
