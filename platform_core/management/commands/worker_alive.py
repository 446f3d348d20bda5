"""Exit 0 when a task-queue cluster on this host reports itself running, else 1.

The worker's container health check. A cluster writes its status every half
second into the per-host status cache (`Q_STATUS_DIR`) with a few seconds' life,
so a hung or dead cluster disappears from it. It says nothing about the
database or the backlog: the lag is a metric with its own alert.
"""

from __future__ import annotations

import socket

from django.core.management.base import BaseCommand, CommandError
from django_q.conf import Conf
from django_q.status import Stat


class Command(BaseCommand):
    help = "Exit 0 when a task-queue cluster on this host is running."

    def handle(self, *args, **options) -> None:
        host = socket.gethostname()
        running = [
            stat
            for stat in Stat.get_all()
            if stat.host == host and stat.status in (Conf.IDLE, Conf.WORKING)
        ]
        if not running:
            raise CommandError(f"no running task-queue cluster on {host}")
        self.stdout.write(
            f"{len(running)} cluster(s) running on {host}: "
            + ", ".join(f"{len(s.workers)} workers, {s.status}" for s in running)
        )
