"""gunicorn's settings for Tollgate's web process (gunicorn reads this file from its
working directory; the Docker image and docker-compose start it there).

Sync workers, two per core: a worker waiting on PostgreSQL, or for its client
to close the connection, leaves its core to another. On the 2-core machine of
docs/performance.md, webhook ingest at 32 senders went from 1,030 events/s with
2 workers (the machine 81% busy) to 1,094 with 4 (97% busy), and end to end
stayed at 382–385 orders/s. `make bench` starts what this file gives.
`WEB_CONCURRENCY` sets the count; by default it is two per core, at most 8.
"""

import os

# The CPUs this process may run on (a container's cpuset; a CPU quota is not seen,
# so the default is capped: each worker holds a PostgreSQL connection).
_CORES = len(os.sched_getaffinity(0))

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY") or min(2 * _CORES, 8))
accesslog = "-"
# Longer than the Stripe client's own timeout (STRIPE_TIMEOUT, 30 s by default).
timeout = 60
graceful_timeout = 20
