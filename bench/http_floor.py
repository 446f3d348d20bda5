"""The HTTP layer's own ceiling: a WSGI app that reads a webhook's body and answers it.

`make bench` serves it with gunicorn exactly as it serves Tollgate (same workers,
same settings file, access log included) and sends it the same signed webhook
deliveries with the same load generator. What it reaches is what any Django view
behind this server could reach on this machine; the gap to the real ingest row is
what Django, the signature check and PostgreSQL cost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

_ANSWER = b'{"received": true, "duplicate": false}'


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(_ANSWER)))],
    )
    return [_ANSWER]
