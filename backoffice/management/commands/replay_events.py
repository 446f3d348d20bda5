"""`manage.py replay_events`: make Stripe events due again (failed ones, or by id), with progress.

Each replay goes through `billing.services.events.event_replay` (a fresh attempt
budget, processed by the worker) and is written to the audit log.
"""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from backoffice.audit import audit_record
from billing.models import StripeEvent
from billing.services.events import event_replay
from kernel.progress import progress_bar


class Command(BaseCommand):
    help = "Replay Stripe events: every failed one (--failed) or the ones named (--id)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--failed", action="store_true", help="every failed event")
        parser.add_argument(
            "--id",
            action="append",
            default=[],
            dest="ids",
            metavar="EVENT",
            help="an event's Stripe id (evt_…) or our id; repeatable",
        )
        parser.add_argument("--type", default="", help="only events of this type")
        parser.add_argument("--reason", default="", help="kept in the audit log")

    def handle(self, *args, failed: bool, ids: list[str], type: str, reason: str, **options):
        if not failed and not ids:
            raise CommandError("Say which events: --failed, or --id evt_… (repeatable).")
        events = StripeEvent.objects.exclude(status=StripeEvent.Status.PROCESSING)
        if failed:
            events = events.filter(status=StripeEvent.Status.FAILED)
        if ids:
            ours = [int(i) for i in ids if i.isdigit()]
            events = events.filter(stripe_id__in=ids) | events.filter(pk__in=ours)
        if type:
            events = events.filter(type=type)
        rows = list(events.order_by("id").values_list("pk", "stripe_id", "status", "attempts"))
        show = progress_bar(self.stderr, "replaying")
        operator = getpass.getuser()
        for done, (pk, stripe_id, status, attempts) in enumerate(rows, start=1):
            with transaction.atomic():
                event_replay(event_id=pk)
                audit_record(
                    actor_id=None,
                    action="event.replay",
                    object_type="billing.stripeevent",
                    object_id=pk,
                    object_repr=stripe_id,
                    reason=reason
                    or f"manage.py replay_events (was {status} after {attempts} attempts)",
                    details={"command": "replay_events", "os_user": operator},
                )
            show(done, len(rows))
        self.stdout.write(self.style.SUCCESS(f"{len(rows)} event(s) queued again."))
