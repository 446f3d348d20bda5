"""`manage.py reconcile`: bring the platform in step with Stripe after lost webhooks."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from billing.services.reconcile import events_reconcile, orders_stuck_recheck
from kernel.progress import progress_bar


class Command(BaseCommand):
    help = (
        "List Stripe's events since --since days ago and process the ones never "
        "received, then re-read orders stuck unpaid for over --stuck-minutes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", type=int, default=30, help="days back (Stripe keeps 30)")
        parser.add_argument("--stuck-minutes", type=int, default=30)

    def handle(self, *args, since: int, stuck_minutes: int, **options) -> None:
        seen, new = events_reconcile(
            since=timezone.now() - timedelta(days=since),
            progress=progress_bar(self.stderr, "events read  "),
        )
        if self.stderr.isatty():  # end the line the display redrew
            self.stderr.write("")
        self.stdout.write(f"{seen} Stripe events read, {new} were new and are queued.")
        checked, moved = orders_stuck_recheck(
            older_than=timedelta(minutes=stuck_minutes),
            progress=progress_bar(self.stderr, "stuck orders "),
        )
        self.stdout.write(
            self.style.SUCCESS(f"{checked} stuck orders re-read from Stripe, {moved} moved on.")
        )
