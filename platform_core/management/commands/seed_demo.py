"""`manage.py seed_demo`: the demo login and credit packs that `make run` starts with.

Idempotent: users are found by username and credit packs by name, then brought
to the values below, so running it again repairs the demo data rather than
duplicating it. The one rule: this command writes known passwords, so it refuses
to run with DEBUG off unless given `--force`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from billing.money import format_minor
from credits.models import CreditPack
from purchasables.models import Plan


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    email: str
    is_staff: bool


@dataclass(frozen=True)
class DemoPack:
    name: str
    credits: int
    price: int  # minor units
    currency: str
    sort_order: int


DEMO_USERS = (
    DemoUser("demo", "demo-password-123", "demo@example.com", is_staff=False),
    DemoUser("admin", "admin-password-123", "admin@example.com", is_staff=True),
)

DEMO_PACKS = (
    DemoPack("Starter", credits=100, price=1000, currency="usd", sort_order=10),
    DemoPack("Standard", credits=500, price=4500, currency="usd", sort_order=20),
    DemoPack("Pro", credits=1200, price=9900, currency="usd", sort_order=30),
)


# Legacy `plan_…` ids, which localstripe knows; with real Stripe, point the plan
# at a `price_…` of your account in the admin.
DEMO_PLANS = (("Monthly", "plan_tollgate_monthly", 1900, 500),)


def demo_user_upsert(*, spec: DemoUser) -> bool:
    """Create or repair one demo user, password included. True when it was created."""
    user, created = get_user_model().objects.get_or_create(
        username=spec.username, defaults={"email": spec.email}
    )
    user.email = user.email or spec.email
    user.is_active = True
    # Staff users are superusers too, so the demo admin can see every admin page.
    user.is_staff = spec.is_staff
    user.is_superuser = spec.is_staff
    user.set_password(spec.password)
    user.save()
    return created


def demo_pack_upsert(*, spec: DemoPack) -> tuple[CreditPack, bool]:
    """Create or update one credit pack, matched on its name."""
    return CreditPack.objects.update_or_create(
        name=spec.name,
        defaults={
            "credits": spec.credits,
            "price": spec.price,
            "currency": spec.currency,
            "active": True,
            "sort_order": spec.sort_order,
        },
    )


class Command(BaseCommand):
    help = "Create or repair the demo users, credit packs and plans (development only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run even with DEBUG off (it sets well-known passwords).",
        )

    def handle(self, *args: Any, force: bool = False, **options: Any) -> None:
        if not settings.DEBUG and not force:
            raise CommandError(
                "DEBUG is off: seed_demo sets well-known passwords, so it refuses to run "
                "here. Pass --force if this really is a development database."
            )
        with transaction.atomic():
            for user_spec in DEMO_USERS:
                created = demo_user_upsert(spec=user_spec)
                role = "staff + superuser" if user_spec.is_staff else "customer"
                verb = "created" if created else "updated, password reset"
                self.stdout.write(f"  user {user_spec.username!r} ({role}): {verb}")
            for pack_spec in DEMO_PACKS:
                pack, created = demo_pack_upsert(spec=pack_spec)
                verb = "created" if created else "updated"
                price = format_minor(pack.price, pack.currency)
                self.stdout.write(
                    f"  credit pack {pack.name!r}: {pack.credits} credits for {price}: {verb}"
                )
            for name, price_id, amount, credits in DEMO_PLANS:
                plan, created = Plan.objects.update_or_create(
                    stripe_price_id=price_id,
                    defaults={"name": name, "amount": amount, "credits_per_cycle": credits},
                )
                verb = "created" if created else "updated"
                price = format_minor(plan.amount, plan.currency)
                self.stdout.write(
                    f"  plan {plan.name!r}: {credits} credits every {plan.interval} "
                    f"for {price}: {verb}"
                )
        self.stdout.write(self.style.SUCCESS("Demo data is in place."))
