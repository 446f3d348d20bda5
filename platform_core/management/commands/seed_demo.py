"""`manage.py seed_demo`: the demo login and credit packs that `make run` starts with.

Idempotent: users are found by username and credit packs by name, then brought
to the values below, so running it again repairs the demo data rather than
duplicating it. The one rule: this command writes known passwords, so it refuses
to run with DEBUG off unless given `--force`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from bookings.models import AvailabilityWindow, PackageItem, Service, ServiceSession
from credits.models import CreditPack, Plan
from kernel.money import format_minor


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


def demo_services_upsert() -> list[str]:
    """Bookable demo services, each kind once, with sessions and availability in the
    coming weeks (moved forward on every run so they stay bookable)."""
    start = (timezone.now() + timedelta(days=7)).replace(hour=10, minute=0, second=0, microsecond=0)
    made = []

    def service(name: str, kind: str, price: int, **extra: Any) -> Service:
        obj, _ = Service.objects.update_or_create(
            name=name, defaults={"kind": kind, "price": price, "active": True, **extra}
        )
        made.append(f"{kind} {name!r}")
        return obj

    def sessions(obj: Service, count: int, capacity: int) -> None:
        if obj.sessions.filter(start__gte=timezone.now()).exists():
            return  # still bookable from an earlier run
        for week in range(count):
            begin = start + timedelta(weeks=week)
            ServiceSession.objects.create(
                service=obj, start=begin, end=begin + timedelta(hours=2), capacity=capacity
            )

    coaching = service("Coaching call", "session", 6000, duration_minutes=60, credit_price=500)
    AvailabilityWindow.objects.filter(service=coaching).delete()
    for day in range(7, 21):
        opens = (timezone.now() + timedelta(days=day)).replace(
            hour=9, minute=0, second=0, microsecond=0
        )
        AvailabilityWindow.objects.create(
            service=coaching, start=opens, end=opens + timedelta(hours=8)
        )
    workshop = service("Pricing workshop", "workshop", 2500, credit_price=200)
    sessions(workshop, count=1, capacity=10)
    course = service("Stripe in four weeks", "course", 12000, credit_price=1000)
    sessions(course, count=4, capacity=12)
    package = service("Coaching bundle", "package", 15000, credit_price=1200)
    PackageItem.objects.update_or_create(
        package=package, item_service=coaching, defaults={"quantity": 3}
    )
    return made


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
            for made in demo_services_upsert():
                self.stdout.write(f"  bookable {made}: in place")
        self.stdout.write(self.style.SUCCESS("Demo data is in place."))
