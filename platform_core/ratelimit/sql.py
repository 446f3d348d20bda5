"""The rate limiter's hand-written SQL: the counter every limited request bumps.

- `window_hit`: counts one hit in a client's window and answers the hits so far,
  in one `INSERT … ON CONFLICT DO UPDATE` (atomic under any concurrency, one
  round trip, where the ORM needs a read and a write); on a window's first hit it
  also deletes the windows that have ended, so the table stays small.

The rule for model signals, as in billing's SQL module: these statements send
none, and nothing in the product listens to the signals of the models they
write (`MODELS_WRITTEN`); a test holds it.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import Model

from platform_core.ratelimit.models import RateLimitWindow

# The models whose rows these statements insert, update or delete.
MODELS_WRITTEN: tuple[type[Model], ...] = (RateLimitWindow,)

_TABLE = connection.ops.quote_name(RateLimitWindow._meta.db_table)
_WINDOW_HIT_SQL = (
    f"INSERT INTO {_TABLE} (key, window_start, expires_at, hits) "  # noqa: S608 - the table name is ours
    "VALUES (%s, %s, %s, 1) "
    "ON CONFLICT (key, window_start) DO UPDATE "
    f"SET hits = {_TABLE}.hits + 1 RETURNING hits"
)
_WINDOWS_ENDED_DELETE_SQL = f"DELETE FROM {_TABLE} WHERE expires_at < %s"  # noqa: S608


def window_hit(*, key: str, window_start: int, expires_at: int) -> int:
    """Count one hit of `key` in the window that starts at `window_start`; answers the
    window's hits, this one included."""
    with connection.cursor() as cursor:
        cursor.execute(_WINDOW_HIT_SQL, [key, window_start, expires_at])
        hits = cursor.fetchone()[0]
        if hits == 1:  # a new window: the client's old ones, and everyone's, are done with
            cursor.execute(_WINDOWS_ENDED_DELETE_SQL, [window_start])
    return hits
