"""Serve the development Stripe: localstripe plus this package's feature modules.

The stock `localstripe` command listens on every interface and pickles its whole
store to a fixed file after every write; this entry point binds 127.0.0.1 only,
starts empty and keeps the store in memory (about twice as fast); with `--store`
it starts from that file and saves to it on exit. Where localstripe does less
than Stripe on the product's paths, it is taught here, never worked around in
the product (a failed 3-D Secure check, a PaymentIntent paid again).

    python -m devstripe --port 8420
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pickle
from pathlib import Path

# The feature modules, each with `install(app)`, installed in this order.
FEATURES: tuple[str, ...] = ("pinned", "shapes", "checkout", "portal", "clock")


def _payment_retries_as_stripe_does(resources) -> None:
    """Teach localstripe what Stripe does when a customer pays a PaymentIntent again.

    - A failed 3-D Secure check sends `payment_intent.payment_failed` (the intent is
      back at `requires_payment_method`, `last_payment_error.code` is
      `payment_intent_authentication_failure`); localstripe sent nothing.
    - Setting a new `payment_method` on an intent that needs one (declined, or failed
      or awaiting authentication) makes it `requires_confirmation` again; localstripe
      kept it where it was, so it could never be confirmed again.

    Must run before `localstripe.server` is imported: its routes bind the functions.
    """
    intent_class = resources.PaymentIntent
    authenticate = intent_class._api_authenticate

    def authenticate_and_report(**data):
        intent = authenticate(**data)
        if intent._authentication_failed:
            resources.schedule_webhook(resources.Event("payment_intent.payment_failed", intent))
        return intent

    resources.extra_apis[:] = [
        (method, url, authenticate_and_report if func == authenticate else func)
        for method, url, func in resources.extra_apis
    ]
    update = intent_class._api_update

    def update_for_retry(cls, id, **data):
        intent = cls._api_retrieve(id)
        if data.get("payment_method") and intent.status in (
            "requires_payment_method",
            "requires_action",
        ):
            resources.PaymentMethod._api_retrieve(data["payment_method"])  # 404 if unknown
            intent.next_action = None
            intent._authentication_failed = False
            if intent.latest_charge is not None and intent.latest_charge.status == "failed":
                intent.latest_charge = None
        return update.__func__(cls, id, **data)

    intent_class._api_update = classmethod(update_for_retry)


def serve(host: str = "127.0.0.1", port: int = 8420, store_path: Path | None = None) -> None:
    """Serve until stopped. With `store_path`, start from that file and save to it on exit,
    so a kept local database and its fake Stripe stay in step across restarts."""
    from aiohttp import web
    from localstripe import resources

    _payment_retries_as_stripe_does(resources)
    from localstripe import server

    resources.Store.dump_to_disk = lambda self: None
    resources.store.clear()
    if store_path is not None and store_path.exists():
        with store_path.open("rb") as f:
            dict.update(resources.store, pickle.load(f))  # noqa: S301 - our own file

    async def save(_app: web.Application) -> None:
        store_path.parent.mkdir(parents=True, exist_ok=True)
        with store_path.open("wb") as f:
            pickle.dump(dict(resources.store), f, protocol=pickle.HIGHEST_PROTOCOL)

    if store_path is not None:
        server.app.on_cleanup.append(save)
    for name in FEATURES:
        importlib.import_module(f"devstripe.{name}").install(server.app)
    logging.basicConfig(level=logging.WARNING)
    web.run_app(server.app, host=host, port=port, print=None, access_log=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--store", type=Path, help="keep the fake Stripe's data in this file")
    args = parser.parse_args()
    serve(args.host, args.port, args.store)


if __name__ == "__main__":
    main()
