"""The audit log: staff refunds, grants and replays are written down, and nothing rewrites them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.urls import reverse

from backoffice.audit import audit_record
from billing.models import Order, Refund, StripeEvent
from platform_core.models import AuditEntry, AuditLogImmutableError
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

BUY = {"is_credit_purchase": True, "credit_amount": 100, "payment_method_id": "pm_card_visa"}


def finance_client():
    user = UserFactory(is_staff=True)
    user.groups.add(Group.objects.get(name="finance"))
    client = Client()
    client.force_login(user)
    return user, client


def refund_form_post(client: Client, order_id: int, **fields) -> object:
    """The refund action as the admin's form posts it: first the page, then the answers."""
    changelist = reverse("admin:billing_order_changelist")
    page = client.post(
        changelist, {"action": "refund_with_form", "index": "0", "_selected_action": [order_id]}
    )
    assert page.status_code == 200 and b'name="reason"' in page.content
    seen = page.context["orders"][0][2]
    return client.post(
        changelist,
        {
            "action": "refund_with_form",
            "_selected_action": [order_id],
            "apply": "1",
            f"refunds_seen_{order_id}": str(seen),
            **fields,
        },
    )


def test_the_refund_form_refunds_the_amount_once_with_its_reason(api, stripe_server):
    order_id = api.post("/payments/create/", BUY).json()["order_id"]
    staff, client = finance_client()
    changelist = reverse("admin:billing_order_changelist")
    page = client.post(
        changelist, {"action": "refund_with_form", "index": "0", "_selected_action": [order_id]}
    )
    answers = {
        "action": "refund_with_form",
        "_selected_action": [order_id],
        "apply": "1",
        f"refunds_seen_{order_id}": str(page.context["orders"][0][2]),
        "amount": "4.00",
        "reason": "Customer asked for part back",
    }
    # The same form sent twice (a double click, a browser resubmit) refunds once.
    assert client.post(changelist, answers).status_code == 302
    assert client.post(changelist, answers).status_code == 302
    [refund] = Refund.objects.all()
    assert (refund.amount, refund.status, refund.initiated_by) == (400, "succeeded", staff)
    assert refund.reason == "Customer asked for part back"
    assert Order.objects.get(pk=order_id).status == Order.Status.PARTIALLY_REFUNDED
    [audit] = AuditEntry.objects.filter(action="refund.create")
    assert (audit.actor, audit.object_id, audit.reason) == (
        staff,
        str(refund.pk),
        "Customer asked for part back",
    )
    assert audit.details == {"order_id": order_id, "amount": 400, "currency": "usd"}
    # The rest, then nothing is left: a further full refund is refused.
    assert refund_form_post(client, order_id, reason="The rest").status_code == 302
    assert refund_form_post(client, order_id, reason="Again").status_code == 302
    assert sorted(Refund.objects.values_list("amount", flat=True)) == [400, 600]
    assert Order.objects.get(pk=order_id).status == Order.Status.REFUNDED
    assert AuditEntry.objects.filter(action="refund.create").count() == 2


def test_a_refund_through_the_api_is_audited(api, staff_api, staff_user, stripe_server):
    order_id = api.post("/payments/create/", BUY).json()["order_id"]
    resp = staff_api.post(f"/payments/orders/{order_id}/refunds/", {"reason": "API refund"})
    assert resp.status_code == 201, resp.content
    audit = AuditEntry.objects.get(action="refund.create")
    assert (audit.actor, audit.reason, audit.details["amount"]) == (staff_user, "API refund", 1000)


def test_a_refund_stripe_made_on_its_own_is_not_a_staff_action(api, stripe_server):
    order_id = api.post("/payments/create/", BUY).json()["order_id"]
    order = Order.objects.get(pk=order_id)
    Refund.objects.create(
        order=order,
        payment=order.payments.get(),
        amount=100,
        currency="usd",
        source=Refund.Source.STRIPE,
        stripe_refund_id="re_dashboard",
    )
    assert not AuditEntry.objects.exists()


def test_a_grant_through_the_api_is_audited_once(staff_api, staff_user, user):
    body = {"user_id": user.pk, "amount": 25, "memo": "Apology", "reference": "ticket-1"}
    assert staff_api.post("/credits/grant/", body).status_code == 201
    assert staff_api.post("/credits/grant/", body).status_code == 200  # a replay writes nothing
    [audit] = AuditEntry.objects.filter(action="credits.grant")
    assert (audit.actor, audit.reason) == (staff_user, "Apology")
    assert audit.details["user_id"] == user.pk
    assert audit.details["reference"] == "grant:ticket-1"


def test_replaying_an_event_from_the_admin_is_audited():
    staff, client = finance_client()
    event = StripeEvent.objects.create(
        stripe_id="evt_audit", type="charge.refunded", payload={}, status="failed", attempts=8
    )
    resp = client.post(
        reverse("admin:billing_stripeevent_changelist"),
        {"action": "replay", "index": "0", "_selected_action": [event.pk]},
    )
    assert resp.status_code == 302
    [audit] = AuditEntry.objects.filter(action="event.replay")
    assert (audit.actor, audit.object_type, audit.object_id) == (
        staff,
        "billing.stripeevent",
        str(event.pk),
    )
    assert "was failed after 8 attempts" in audit.reason


def test_the_replay_command_is_audited_and_shows_progress(capsys):
    from django.core.management import call_command

    for n in range(3):
        StripeEvent.objects.create(
            stripe_id=f"evt_cmd{n}", type="charge.refunded", payload={}, status="failed"
        )
    StripeEvent.objects.create(stripe_id="evt_ok", type="x", payload={}, status="processed")
    call_command("replay_events", "--failed")
    out = capsys.readouterr()
    assert "3/3" in out.err and "3 event(s) queued again" in out.out
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"pending", "processed"}
    assert AuditEntry.objects.filter(action="event.replay", actor=None).count() == 3


def test_audit_entries_cannot_be_changed_or_deleted():
    entry = audit_record(actor_id=None, action="test.action", object_type="x.y", object_id=1)
    entry.reason = "rewritten"
    with pytest.raises(AuditLogImmutableError):
        entry.save()
    with pytest.raises(AuditLogImmutableError):
        entry.delete()
    with pytest.raises(AuditLogImmutableError):
        AuditEntry.objects.filter(pk=entry.pk).update(reason="rewritten")
    with pytest.raises(AuditLogImmutableError):
        AuditEntry.objects.filter(pk=entry.pk).delete()
    # Not even a raw query (the database's trigger).
    for sql in (
        "UPDATE platform_core_auditentry SET reason = 'rewritten' WHERE id = %s",
        "DELETE FROM platform_core_auditentry WHERE id = %s",
    ):
        with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cur:
            cur.execute(sql, [entry.pk])
    entry.refresh_from_db()
    assert entry.reason == ""


def test_cancelling_a_booking_from_the_admin_is_audited():
    from bookings.models import Booking
    from tests.bookings.factories import ServiceSessionFactory

    session = ServiceSessionFactory()
    booking = Booking.objects.create(
        user=UserFactory(),
        service=session.service,
        session=session,
        start=session.start,
        end=session.end,
        order_id=1,
    )
    staff, client = finance_client()
    resp = client.post(
        reverse("admin:bookings_booking_changelist"),
        {"action": "cancel_bookings", "index": "0", "_selected_action": [booking.pk]},
    )
    assert resp.status_code == 302
    booking.refresh_from_db()
    assert booking.status == Booking.Status.CANCELED
    [audit] = AuditEntry.objects.filter(action="booking.cancel")
    assert (audit.actor, audit.object_id) == (staff, str(booking.pk))
