"""Every `/v1/…` request checked against the pinned API version's parameter types.

The development Stripe is more lenient than Stripe in some places (localstripe never
looks at a parameter it does not use) and stricter in others; neither may decide what
the product sends. This module judges each request by stripe-python's own parameter
types for the pinned version (`devstripe.schema`) before anything else sees it:

- a violation (an unknown, renamed or mistyped parameter, a value outside an enum, a
  missing required one, an endpoint the version does not have, another
  `Stripe-Version`) is recorded, and answered 400 as Stripe answers it, naming the
  parameter (set `DEVSTRIPE_LENIENT=1` to record only);
- `GET /_config/pinned/violations` lists what was recorded, `DELETE` empties it; the
  test suite fails when the list is not empty.

Routes of localstripe's own (a path segment starting with `_`, such as its 3-D Secure
step) are not Stripe's, and Stripe.js's browser-side requests (authenticated by a
publishable key in the body, not a secret key) are not the server's: neither is judged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from devstripe import schema

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A JSON body as the form pairs Stripe would have received."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _flatten(v, f"{prefix}[{k}]" if prefix else k)]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _flatten(v, f"{prefix}[{i}]")]
    if isinstance(value, bool):
        return [(prefix, "true" if value else "false")]
    return [(prefix, "" if value is None else str(value))]


async def request_params(request: web.Request) -> dict[str, schema.Tree]:
    """The request's parameters as Stripe decodes them: the query string, and the body."""
    pairs = list(request.query.items())
    if request.method in ("POST", "PUT") and request.body_exists:
        if request.content_type == "application/json":
            pairs += _flatten(await request.json())
        else:
            pairs += [(k, v) for k, v in (await request.post()).items() if isinstance(v, str)]
    return schema.decode(pairs)


def judged(request: web.Request) -> bool:
    """Server-side Stripe requests: `/v1/…` with a secret key. Stripe.js's browser-side
    ones (a publishable key in the body) may carry raw card data that the server-side
    parameter types leave out on purpose; localstripe's own routes are not Stripe's."""
    path = request.path
    return (
        path.startswith("/v1/")
        and not any(s.startswith("_") for s in path.split("/"))
        and "Authorization" in request.headers
    )


def _error(violation: str) -> web.Response:
    param, _, reason = violation.partition(": ")
    message = (
        f"Received unknown parameter: {param}"
        if reason == "unknown parameter"
        else f"Invalid request at API version {schema_version()}: {violation}"
    )
    return web.json_response(
        {"error": {"type": "invalid_request_error", "message": message, "param": param}},
        status=400,
    )


def schema_version() -> str:
    import stripe

    return stripe.api_version


def install(app: web.Application) -> None:
    recorded: list[dict[str, Any]] = []
    strict = os.environ.get("DEVSTRIPE_LENIENT", "") in ("", "0")
    version = schema_version()

    @web.middleware
    async def check_pinned(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not judged(request):
            return await handler(request)
        found = schema.violations(request.method, request.path, await request_params(request))
        sent_version = request.headers.get("Stripe-Version")
        if sent_version and sent_version != version:
            found.append(f"Stripe-Version: {sent_version!r} is not the pinned {version!r}")
        if not found:
            return await handler(request)
        recorded.extend(
            {"method": request.method, "path": request.path, "violation": v} for v in found
        )
        return _error(found[0]) if strict else await handler(request)

    async def violations_list(_request: web.Request) -> web.Response:
        return web.Response(text=json.dumps(recorded), content_type="application/json")

    async def violations_clear(_request: web.Request) -> web.Response:
        recorded.clear()
        return web.Response()

    # Outermost of the feature middlewares: it sees each request as the client sent it,
    # before another module translates it for localstripe.
    app.middlewares.append(check_pinned)
    app.router.add_get("/_config/pinned/violations", violations_list)
    app.router.add_delete("/_config/pinned/violations", violations_clear)
