"""The bookable purchase types through the registry, as billing calls them.

Orders here are `OrderInfo` values with made-up ids: bookings refer to orders by
id only, so the hooks can be driven exactly as billing drives them without a
billing row.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from bookings.models import Booking, SeatHold, Service
from purchasables.errors import FulfilmentImpossibleError
from purchasables.registry import registry
from purchasables.types import OrderInfo, PurchaseRequest, RefundInfo
from tests.bookings.seat_checks import free_seats
from tests.bookings.times import at, iso

pytest_plugins = ["tests.bookings.fixtures"]
pytestmark = pytest.mark.django_db

KINDS = ["session", "workshop", "course", "package", "bundle"]
_order_ids = itertools.count(1000)


def ordered(service: Service, user, scheduling=None) -> OrderInfo:
    """Quote and reserve, as `order_create` does; the order as the plugin sees it."""
    quote = registry.quote(
        PurchaseRequest(
            user_id=user.pk,
            purchase_type=service.kind,
            service_id=service.pk,
            scheduling_data=scheduling or {},
        )
    )
    order = OrderInfo(
        order_id=next(_order_ids),
        user_id=user.pk,
        purchase_type=service.kind,
        order_type="direct",
        amount=quote.amount,
        currency=quote.currency,
        metadata=quote.metadata,
        data=quote.data,
    )
    registry.reserve(order)
    return order


def refund_of(order: OrderInfo, amount: int, refunded_before: int = 0) -> RefundInfo:
    return RefundInfo(
        refund_id=next(_order_ids),
        stripe_refund_id=f"re_test{next(_order_ids)}",
        amount=amount,
        currency=order.currency,
        refunded_total=refunded_before + amount,
        reason="requested_by_customer",
    )


def test_the_five_bookable_types_are_direct_purchase_types():
    types = {spec.name: spec for spec in registry.purchase_types()}
    for kind in KINDS:
        assert types[kind].order_type == "direct"
        assert types[kind].label


@pytest.mark.parametrize("kind", KINDS)
def test_a_service_id_alone_names_its_purchase_type(kind, request):
    fixture = {"session": "one_on_one"}.get(kind, kind)
    service = request.getfixturevalue(fixture)
    assert registry.service_purchase_type(service.pk) == kind


def test_an_unknown_service_has_no_purchase_type(db):
    assert registry.service_purchase_type(999999) is None


def test_the_catalog_lists_sessions_with_free_seats_and_package_contents(
    small_workshop, bundle, user
):
    ordered(small_workshop, user)
    workshops = {s["name"]: s for s in registry.catalog("workshop")["services"]}
    assert set(workshops) == {"Knife skills", "Sourdough workshop"}
    listed = workshops["Knife skills"]
    assert (listed["id"], listed["price"], listed["currency"]) == (small_workshop.pk, 3000, "usd")
    [session] = listed["sessions"]
    assert (session["capacity"], session["free_seats"]) == (2, 1)
    [listed_bundle] = registry.catalog("bundle")["services"]
    assert [(i["kind"], i["quantity"]) for i in listed_bundle["items"]] == [
        ("session", 2),
        ("workshop", 1),
    ]
    [call] = registry.catalog("session")["services"]
    assert call["availability"] == [{"start": iso(at(9)), "end": iso(at(17))}]


def test_quotes_are_priced_on_the_server_with_the_unified_metadata(
    workshop, one_on_one, bundle, user
):
    session = workshop.sessions.get()
    quote = registry.quote(
        PurchaseRequest(user_id=user.pk, purchase_type="workshop", service_id=workshop.pk)
    )
    assert (quote.amount, quote.currency) == (4500, "usd")
    assert quote.metadata == {
        "service_id": str(workshop.pk),
        "service_type": "workshop",
        "service_name": "Sourdough workshop",
        "service_session_id": str(session.pk),
    }
    quote = registry.quote(
        PurchaseRequest(
            user_id=user.pk,
            purchase_type="session",
            service_id=one_on_one.pk,
            scheduling_data={"start_datetime": iso(at(10))},
        )
    )
    assert quote.metadata == {
        "service_id": str(one_on_one.pk),
        "service_type": "session",
        "service_name": "Coaching call",
    }
    assert quote.data["plan"]["start"] == iso(at(10))
    quote = registry.quote(
        PurchaseRequest(user_id=user.pk, purchase_type="bundle", service_id=bundle.pk)
    )
    assert (quote.amount, quote.metadata["service_type"]) == (15000, "bundle")


def test_reserve_holds_and_release_gives_back(small_workshop, user):
    session = small_workshop.sessions.get()
    order = ordered(small_workshop, user)
    assert free_seats(session) == 1
    registry.release(order, reason="failed")
    registry.release(order, reason="failed")
    assert free_seats(session) == 2
    assert SeatHold.objects.get(order_id=order.order_id).status == "released"


def test_fulfil_books_the_plan_and_reports_it(course, user):
    order = ordered(course, user)
    result = registry.fulfil(order)
    parent = Booking.objects.get(order_id=order.order_id, parent__isnull=True)
    assert result == {"booking_id": parent.pk, "bookings": 4}
    assert parent.children.count() == 3


def test_fulfil_after_the_hold_expired_and_the_seat_went_is_impossible(
    small_workshop, user, other_user
):
    late = ordered(small_workshop, user)
    SeatHold.objects.filter(order_id=late.order_id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    registry.fulfil(ordered(small_workshop, other_user))
    registry.fulfil(ordered(small_workshop, other_user))

    with pytest.raises(FulfilmentImpossibleError) as err:
        registry.fulfil(late)
    assert "ran out before the payment arrived" in err.value.message
    assert "0 free seats" in err.value.message
    assert err.value.extra["service_session_id"] == small_workshop.sessions.get().pk
    assert not Booking.objects.filter(order_id=late.order_id).exists()
    # What billing does next: refund it in full; the refund hook has nothing to undo.
    assert registry.refund(late, refund_of(late, late.amount)) == {"bookings_canceled": 0}


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_refund_cancels_every_booking_and_frees_the_seats(kind, request, user):
    service, scheduling = _bookable(kind, request)
    order = ordered(service, user, scheduling)
    registry.fulfil(order)
    made = Booking.objects.filter(order_id=order.order_id).count()

    result = registry.refund(order, refund_of(order, order.amount))
    assert result == {"bookings_canceled": made}
    assert set(
        Booking.objects.filter(order_id=order.order_id).values_list("status", flat=True)
    ) == {"canceled"}
    assert registry.refund(order, refund_of(order, 0, order.amount)) == {"bookings_canceled": 0}
    # The seats and slots are free again: the same purchase fits once more.
    registry.fulfil(ordered(service, user, scheduling))


@pytest.mark.parametrize("kind", KINDS)
def test_a_partial_refund_marks_bookings_partially_refunded(kind, request, user):
    service, scheduling = _bookable(kind, request)
    order = ordered(service, user, scheduling)
    registry.fulfil(order)
    made = Booking.objects.filter(order_id=order.order_id).count()

    first = registry.refund(order, refund_of(order, 100))
    assert first == {"bookings_partially_refunded": made}
    assert set(
        Booking.objects.filter(order_id=order.order_id).values_list("status", flat=True)
    ) == {"partially_refunded"}
    assert registry.refund(order, refund_of(order, 100, 100)) == {"bookings_partially_refunded": 0}
    # The rest of the money: now a full refund.
    rest = order.amount - 200
    assert registry.refund(order, refund_of(order, rest, 200)) == {"bookings_canceled": made}


def _bookable(kind: str, request) -> tuple[Service, dict]:
    """A service of `kind` with seats for one buyer at a time, and what to send for it."""
    if kind == "session":
        return request.getfixturevalue("one_on_one"), {"start_datetime": iso(at(10))}
    if kind == "workshop":
        return request.getfixturevalue("small_workshop"), {}
    if kind == "course":
        course = request.getfixturevalue("course")
        course.sessions.update(capacity=1)
        return course, {}
    service = request.getfixturevalue(kind)
    call = request.getfixturevalue("one_on_one")
    return service, {"items": [{"service_id": call.pk, "start_datetime": iso(at(10))}]}
