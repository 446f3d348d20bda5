"""Run localstripe, the fake Stripe API used by `make run` and the tests, on loopback.

The stock `localstripe` command listens on every interface and pickles its whole
store to a fixed file after every write; this entry point binds 127.0.0.1 only,
starts empty and keeps the store in memory (about twice as fast).

    python -m platform_core.localstripe_server --port 8420
"""

from __future__ import annotations

import argparse
import logging


def serve(host: str = "127.0.0.1", port: int = 8420) -> None:
    from aiohttp import web
    from localstripe import resources, server

    resources.Store.dump_to_disk = lambda self: None
    resources.store.clear()
    logging.basicConfig(level=logging.WARNING)
    web.run_app(server.app, host=host, port=port, print=None, access_log=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args()
    serve(args.host, args.port)


if __name__ == "__main__":
    main()
