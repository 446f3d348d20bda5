"""Subscription plans live in the credits app, in the table they always had, and
the staff groups still read them."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection

from credits.models import Plan

pytestmark = pytest.mark.django_db


def test_a_plan_is_stored_in_the_table_it_had_before_it_moved():
    plan = Plan.objects.create(
        name="Pro", stripe_price_id="price_pro", amount=1900, credits_per_cycle=500
    )
    assert Plan._meta.label == "credits.Plan"
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM purchasables_plan WHERE id = %s", [plan.pk])
        assert cursor.fetchone() == ("Pro",)


def test_the_plan_content_type_moved_with_its_permissions_and_the_groups_keep_them():
    assert not ContentType.objects.filter(app_label="purchasables", model="plan").exists()
    view_plan = Permission.objects.get(content_type__app_label="credits", codename="view_plan")
    for name in ("support", "finance"):
        assert Group.objects.get(name=name).permissions.filter(pk=view_plan.pk).exists()


def test_the_staff_groups_read_credit_lots_and_their_draws():
    for name in ("support", "finance"):
        codenames = set(
            Group.objects.get(name=name)
            .permissions.filter(content_type__app_label="credits")
            .values_list("codename", flat=True)
        )
        assert {"view_creditlot", "view_creditdraw", "view_plan"} <= codenames, name
