"""gunicorn's settings for Tollgate's web process (gunicorn reads this file from its
working directory; the Docker image and docker-compose start it there).

Sync workers, two per core: a worker waiting on PostgreSQL leaves its core to
another. On the 2-core machine of docs/performance.md, webhook ingest at 32
senders went from about 700 to 760–810 events/s with 4 workers instead of 2;
there the queue workers share those cores, and end to end fell by about a fifth,
so `make bench` keeps 2 (`--web-workers`). `WEB_CONCURRENCY` sets the count.
"""

import multiprocessing
import os

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * multiprocessing.cpu_count())
accesslog = "-"
# Longer than the Stripe client's own timeout (STRIPE_TIMEOUT, 30 s by default).
timeout = 60
graceful_timeout = 20
