"""A timing proxy in front of localstripe: forwards every request, records how long Stripe took.

    python -m bench.stripe_proxy --port 9001 --upstream http://127.0.0.1:9000 --log t.jsonl

Each forwarded request appends one JSON line: method, path, status, the
`Idempotency-Key` Tollgate sent (it names the order: `tg-<scope>-order-<id>-pi`),
the wall-clock start and the upstream duration in milliseconds, measured from
sending the request to localstripe until its whole answer was read. So the time
an order-create request spent in "Stripe" is the sum of its lines, and the rest
of the request's latency is Tollgate's (plus this proxy's own hop, which the
benchmark measures separately).

The rule: it binds 127.0.0.1 only and changes nothing it forwards.
"""

from __future__ import annotations

import argparse
import json
import time

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


def make_app(upstream: str, log_path: str) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the app

    async def session_start(app: web.Application) -> None:
        app["session"] = ClientSession(
            connector=TCPConnector(limit=64), timeout=ClientTimeout(total=60)
        )

    async def session_close(app: web.Application) -> None:
        await app["session"].close()
        log.close()

    async def forward(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        started = time.time()
        t0 = time.perf_counter()
        async with app["session"].request(
            request.method, upstream + request.rel_url.path_qs, data=body, headers=headers
        ) as resp:
            payload = await resp.read()
            elapsed = (time.perf_counter() - t0) * 1000
            out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS}
            out_headers.pop("Content-Encoding", None)
            status = resp.status
        log.write(
            json.dumps(
                {
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "key": request.headers.get("Idempotency-Key", ""),
                    "start": started,
                    "ms": round(elapsed, 3),
                }
            )
            + "\n"
        )
        return web.Response(status=status, body=payload, headers=out_headers)

    app.on_startup.append(session_start)
    app.on_cleanup.append(session_close)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    web.run_app(
        make_app(args.upstream.rstrip("/"), args.log),
        host="127.0.0.1",
        port=args.port,
        print=None,
        access_log=None,
    )


if __name__ == "__main__":
    main()
