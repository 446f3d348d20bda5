"""Settings for the benchmark and storm stacks: production settings, rate limits off.

The rule: everything comes from `platform_core.settings` and the environment the
harness sets (DEBUG=0, a real-looking SECRET_KEY, localstripe as Stripe,
CONN_MAX_AGE=600, TLS taken as terminated in front of the app, so
SECURE_SSL_REDIRECT=0); the changes made here are that request rate limits are
off, because a load generator is one client sending thousands of requests a
second on purpose, and so are the per-user seat-hold limits (the seeded orders
hold every seat) unless `BENCH_HOLD_LIMITS=on` (the storm). (The harness also
sets TOLLGATE_RATE_LIMIT_*=off; this covers a limit added later without its own
variable.) `BENCH_EVENT_RETRY_BACKOFF`, set
only by `python -m bench.storm --small`, shortens the retry back-off.
"""

from __future__ import annotations

import os

from platform_core.settings import *  # noqa: F403
from platform_core.settings import TOLLGATE

if isinstance(TOLLGATE.get("RATE_LIMITS"), dict):
    TOLLGATE = {**TOLLGATE, "RATE_LIMITS": dict.fromkeys(TOLLGATE["RATE_LIMITS"], "off")}

# The seeded load fills sessions with unpaid holds of randomly chosen users on purpose
# (every seat held, so a double booking shows): the per-user hold limits, a guard
# against one customer hoarding seats, would refuse it. The storm keeps them
# (BENCH_HOLD_LIMITS=on): its hoarders test them, and it seeds its own holds with
# them off.
if os.environ.get("BENCH_HOLD_LIMITS") != "on":
    TOLLGATE = {**TOLLGATE, "BOOKING_HOLD_SEATS_PER_SESSION": 0, "BOOKING_HOLDS_PER_USER": 0}

# The small storm inside `make test` compresses the retry back-off (seconds, comma-separated)
# so that an event which arrived before what it depends on is retried within its minute.
if os.environ.get("BENCH_EVENT_RETRY_BACKOFF"):
    TOLLGATE = {
        **TOLLGATE,
        "EVENT_RETRY_BACKOFF": [int(x) for x in os.environ["BENCH_EVENT_RETRY_BACKOFF"].split(",")],
    }
