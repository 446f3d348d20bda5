"""Instances from raw rows are the instances the ORM builds, and `saved` is `save()`'s signal.

These lean on Django internals (`Model.from_db`, the backend's and the fields'
converters): they are what fails first when an upgrade changes them.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from django.db import connection
from django.db.models import Model
from django.db.models.signals import post_save

from billing.models import Order, StripeEvent
from kernel.rows import instance_from_row, saved
from platform_core.models import ApiToken
from tests.billing.factories import OrderFactory
from tests.factories import UserFactory
from tests.stripe_events import new_id

pytestmark = pytest.mark.django_db


def raw_row(model: type[Model], pk: int, attnames: list[str] | None = None) -> tuple:
    """The row as a hand-written `SELECT` answers it: every column, or those named."""
    by_attname = {f.attname: f.column for f in model._meta.concrete_fields}
    columns = [by_attname[name] for name in attnames or by_attname]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {', '.join(columns)} FROM {model._meta.db_table} WHERE id = %s",  # noqa: S608
            [pk],
        )
        return cursor.fetchone()


def test_a_full_row_becomes_the_instance_the_orm_reads():
    order = OrderFactory(data={"credits": 100, "nested": {"a": [1, 2]}}, paid_at=None)
    built = instance_from_row(Order, raw_row(Order, order.pk), alias="default")
    expected = Order.objects.get(pk=order.pk)
    for field in Order._meta.concrete_fields:
        value = getattr(built, field.attname)
        assert value == getattr(expected, field.attname), field.name
        assert type(value) is type(getattr(expected, field.attname)), field.name
    # What the converters did: JSON decoded, times aware.
    assert built.data == {"credits": 100, "nested": {"a": [1, 2]}}
    assert isinstance(built.created_at, datetime) and built.created_at.tzinfo is not None
    assert (built._state.adding, built._state.db) == (False, "default")
    assert built.get_deferred_fields() == set()


def test_a_row_of_some_columns_defers_the_rest_as_only_does():
    stored = StripeEvent.objects.create(
        stripe_id=new_id("evt"), type="test.thing", payload={"id": "x", "n": 1}
    )
    names = ["payload", "id", "type"]  # any order, named
    built = instance_from_row(
        StripeEvent, raw_row(StripeEvent, stored.pk, names), alias="default", attnames=names
    )
    expected = StripeEvent.objects.only(*names).get(pk=stored.pk)
    assert (built.pk, built.type, built.payload) == (stored.pk, "test.thing", {"id": "x", "n": 1})
    assert built.get_deferred_fields() == expected.get_deferred_fields()
    assert built.stripe_id == stored.stripe_id  # a deferred field loads on first use


def test_a_row_that_does_not_fit_the_field_list_is_refused():
    """A statement and its field list that drift apart must fail, never shift columns."""
    order = OrderFactory()
    row = raw_row(Order, order.pk)
    with pytest.raises(ValueError):
        instance_from_row(Order, row[:-1], alias="default")
    with pytest.raises(ValueError):
        instance_from_row(Order, row[:2], alias="default", attnames=["id", "id"])


def test_saved_sends_post_save_as_save_does():
    heard: list[dict] = []

    def receiver(sender, **kwargs):
        heard.append({"sender": sender, **kwargs})

    post_save.connect(receiver, sender=ApiToken, weak=False)
    try:
        user = UserFactory()
        token = ApiToken.objects.create(user=user, digest="e" * 64, prefix="tg_def")
        saved(token, using="default", created=True)
        token.save(update_fields=["name"])
        saved(token, using="default", created=False, update_fields=frozenset({"name"}))
    finally:
        post_save.disconnect(receiver, sender=ApiToken)
    by_save, by_hand, updated_by_save, updated_by_hand = heard
    assert by_save == by_hand
    assert updated_by_save == updated_by_hand
    assert by_save["created"] is True and updated_by_save["update_fields"] == frozenset({"name"})
