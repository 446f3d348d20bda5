"""The rate limiter's hand-written SQL: the counter every limited request bumps.

- `window_hit`: counts one hit in a client's window and answers the hits so far,
  in one `INSERT … ON CONFLICT DO UPDATE` (atomic under any concurrency, one
  round trip, where the ORM needs a read and a write); on a window's first hit it
  also deletes the windows that have ended, so the table stays small.

The rule for model signals, the same in every app's SQL module: each row a
statement here inserts is announced with `post_save` exactly as `create()`
announces it; what a statement updates or deletes is announced by nothing, as
`QuerySet.update()` announces nothing. Nothing in the product listens to the
models in `MODELS_UPDATED` (a test holds it).
"""

from __future__ import annotations

from django.db import connection
from django.db.models import Model

from kernel.rows import saved
from platform_core.ratelimit.models import RateLimitWindow

# The models whose rows these statements insert (each announced with `post_save`), and
# those whose rows they update or delete (announced by nothing).
MODELS_INSERTED: tuple[type[Model], ...] = (RateLimitWindow,)
MODELS_UPDATED: tuple[type[Model], ...] = (RateLimitWindow,)

_TABLE = connection.ops.quote_name(RateLimitWindow._meta.db_table)
_WINDOW_HIT_SQL = (
    f"INSERT INTO {_TABLE} (key, window_start, expires_at, hits) "  # noqa: S608 - the table name is ours
    "VALUES (%s, %s, %s, 1) "
    "ON CONFLICT (key, window_start) DO UPDATE "
    f"SET hits = {_TABLE}.hits + 1 RETURNING id, hits"
)
_WINDOWS_ENDED_DELETE_SQL = f"DELETE FROM {_TABLE} WHERE expires_at < %s"  # noqa: S608


def window_hit(*, key: str, window_start: int, expires_at: int) -> int:
    """Count one hit of `key` in the window that starts at `window_start`; answers the
    window's hits, this one included."""
    with connection.cursor() as cursor:
        cursor.execute(_WINDOW_HIT_SQL, [key, window_start, expires_at])
        window_id, hits = cursor.fetchone()
        if hits > 1:
            return hits
        # A new window: the client's old ones, and everyone's, are done with.
        cursor.execute(_WINDOWS_ENDED_DELETE_SQL, [window_start])
    window = RateLimitWindow(
        id=window_id, key=key, window_start=window_start, expires_at=expires_at, hits=1
    )
    window._state.adding, window._state.db = False, connection.alias
    saved(window, using=connection.alias, created=True)
    return hits
