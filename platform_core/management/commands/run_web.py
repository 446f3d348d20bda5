"""`manage.py run_web`: Django's development server whose request threads close their
database connections; the web server `make run` starts.

The development server serves each client connection on a thread of its own,
which ends with it. A connection opened on such a thread outlives the request
whenever `CONN_MAX_AGE` is above zero (the default here, for the worker's
sake), and nothing closes it when the thread ends: after a burst of requests
the idle server held one PostgreSQL connection per thread, until PostgreSQL
refused new clients. The rule: a request thread closes its connections when it
has served its client (what Django's own test server does), so the server holds
none while idle. Everything else is `runserver`, static files included.
"""

from __future__ import annotations

from django.contrib.staticfiles.management.commands.runserver import Command as RunServer
from django.core.servers.basehttp import WSGIServer
from django.db import connections


class ConnectionClosingWSGIServer(WSGIServer):
    """`runserver`'s server; each request thread closes its database connections at the end."""

    def close_request(self, request) -> None:
        # Called on the request's own thread, after its last response: the
        # connections closed are that thread's, never another request's.
        try:
            connections.close_all()
        finally:
            super().close_request(request)


class Command(RunServer):
    help = "Start the development web server; request threads keep no database connection."
    server_cls = ConnectionClosingWSGIServer
