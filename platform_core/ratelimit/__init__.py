"""Rate limits for the operations worth guessing at: a counter per client and time window.

The counters live in the database (one row per key and window, bumped with one
atomic `INSERT … ON CONFLICT DO UPDATE … RETURNING`), not in Django's cache: the
default cache is per process, so with several web processes each would allow
the full rate, and Django's database cache increments with a read and a write
that race. The database is what every web process already shares (every
guarantee of the platform comes from it), and one upsert is one round trip.
The table is UNLOGGED (migration 0002), so that upsert's commit
does not wait for the disk; a crash only resets the counters.

The rule: a limited operation calls `rate_limit_hit` before it does any work,
so a refused request costs one statement and reaches neither the password
hasher nor Stripe. This package is its own small Django app so that its table
and migration stand apart from the rest of `platform_core`.
"""
