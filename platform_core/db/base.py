"""Django's PostgreSQL backend, whose health check pings only a connection that idled.

With `CONN_HEALTH_CHECKS`, Django pings a kept connection (`SELECT 1`) before the
first query of every request, so that one PostgreSQL restarted or failed over
since its last use is replaced instead of failing the request. Under load that
ping is a round trip per webhook. A connection that ran a query less than
`HEALTH_CHECK_AFTER_IDLE` seconds ago answered then; it is not pinged again. One
that broke since then fails its request (503, as a lost database always does),
and is closed at that request's end, so the next one reconnects.

The rule: the check is skipped only for a connection used moments ago; one that
idled is always checked.
"""

from __future__ import annotations

import time

from django.db.backends.postgresql import base

# Shorter than any PostgreSQL restart or failover: a connection that ran a query this
# recently cannot have missed one since (a query during the outage fails and closes it).
HEALTH_CHECK_AFTER_IDLE = 0.05  # seconds


class DatabaseWrapper(base.DatabaseWrapper):
    _last_used = float("-inf")

    def create_cursor(self, name=None):
        self._last_used = time.monotonic()
        return super().create_cursor(name)

    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and time.monotonic() - self._last_used < HEALTH_CHECK_AFTER_IDLE
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
