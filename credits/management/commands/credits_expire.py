"""`manage.py credits_expire`: expire what is left of every credit lot past its expiry now.

The same sweep the worker runs on its schedule; safe to run at any time, twice,
or while clients spend.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from credits.services import credits_expire_due
from kernel.progress import progress_bar


class Command(BaseCommand):
    help = "Expire what is left of every credit lot past its expiry (one ledger entry per lot)."

    def handle(self, *args, **options) -> None:
        expired = credits_expire_due(progress=progress_bar(self.stderr, "credit lots "))
        if self.stderr.isatty():  # end the line the display redrew
            self.stderr.write("")
        self.stdout.write(self.style.SUCCESS(f"{expired} credit lots expired."))
