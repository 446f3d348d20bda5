"""`manage.py erase_user <id|username> [--yes]`: erase a user's personal data, with progress.

Financial records stay (orders, payments, refunds, ledger: retained seven
years); the account is anonymised and blocked, its cards and Stripe customer
removed. Safe to run again: an erasure Stripe interrupted is finished.
"""

from __future__ import annotations

import getpass
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from backoffice.data_rights import user_erase
from kernel.errors import DomainError
from kernel.progress import progress_bar


class Command(BaseCommand):
    help = "Erase a user's personal data, keeping their financial records."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="the user's id or username")
        parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")
        parser.add_argument("--reason", default="", help="the request this answers; audited")

    def handle(self, *args, user: str, yes: bool, reason: str, **options) -> None:
        users = get_user_model().objects
        found = users.filter(pk=int(user)).first() if user.isdigit() else None
        found = found or users.filter(**{users.model.USERNAME_FIELD: user}).first()
        if found is None:
            raise CommandError(f"No user {user!r}.")
        if not yes:
            if not sys.stdin.isatty():
                raise CommandError("Refusing to erase without --yes when not run interactively.")
            answer = input(f"Erase the personal data of user {found.pk} ({found}) for good? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("Nothing was erased.")
        bars: dict[str, object] = {}

        def progress(step: str, done: int, total: int) -> None:
            bar = bars.setdefault(step, progress_bar(self.stderr, f"{step:<16}"))
            bar(done, total)

        try:
            report = user_erase(
                user_id=found.pk,
                actor_id=None,
                reason=reason or f"manage.py erase_user by {getpass.getuser()}",
                progress=progress,
            )
        except DomainError as exc:
            raise CommandError(f"{exc.message} Run the command again to finish.") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"User {report.user_id} erased"
                + (" (it had been before)" if report.already_erased else "")
                + f": {report.tokens_revoked} tokens revoked, {report.cards_removed} cards "
                f"removed, Stripe customer {'deleted' if report.customer_deleted else 'absent'}."
            )
        )
