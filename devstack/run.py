"""`make run`'s entry point: put development defaults in the environment, then start Django.

    python -m devstack.run [--no-seed]

Django reads its settings once, at import, and with DEBUG off they refuse to
start without production secrets; so the defaults have to be in `os.environ`
before Django is imported. This module sets them, never overriding a variable
the user already set, starts the embedded PostgreSQL when no `DATABASE_URL` is
given (its data in `var/pgdata`, kept across runs, stopped on exit), and then
runs the supervisor (`devstack.supervisor`) in this same process; the children
it starts inherit the same environment.

Which Stripe: without `STRIPE_SECRET_KEY` in the environment, localstripe (the
fake Stripe server) on 127.0.0.1; with it, real Stripe, and nothing Stripe-related
is defaulted.

The one rule: nothing in this module imports Django before `main()` has set the
environment.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import MutableMapping

from devstack.database import database_url

# Development-only values; settings.py refuses them when DEBUG is off.
DEV_SECRET_KEY = "django-insecure-tollgate-make-run"
LOCALSTRIPE_SECRET_KEY = "sk_test_localstripe"
LOCALSTRIPE_PUBLISHABLE_KEY = "pk_test_localstripe"
LOCALSTRIPE_WEBHOOK_SECRET = "whsec_localdev"
DEFAULT_WEB_PORT = 8000
DEFAULT_LOCALSTRIPE_PORT = 8420


def port_from_env(environ: MutableMapping[str, str], name: str, default: int) -> int:
    """The TCP port in `environ[name]`, or `default`; exits with a clear message if invalid."""
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        sys.exit(f"{name}={raw!r} is not a TCP port (1-65535).")
    return int(raw)


def uses_real_stripe(environ: MutableMapping[str, str]) -> bool:
    """Real Stripe when the user exported a secret key; localstripe otherwise."""
    return bool(environ.get("STRIPE_SECRET_KEY", "").strip())


def development_defaults(environ: MutableMapping[str, str]) -> dict[str, str]:
    """The variables `make run` would set in `environ`: only those not set already."""
    web_port = port_from_env(environ, "TOLLGATE_PORT", DEFAULT_WEB_PORT)
    wanted = {
        "DJANGO_SETTINGS_MODULE": "platform_core.settings",
        "DEBUG": "1",
        "SECRET_KEY": DEV_SECRET_KEY,
        "FRONTEND_URL": f"http://127.0.0.1:{web_port}",
    }
    if not uses_real_stripe(environ):
        stripe_port = port_from_env(environ, "LOCALSTRIPE_PORT", DEFAULT_LOCALSTRIPE_PORT)
        wanted |= {
            "STRIPE_SECRET_KEY": LOCALSTRIPE_SECRET_KEY,
            "STRIPE_PUBLISHABLE_KEY": LOCALSTRIPE_PUBLISHABLE_KEY,
            "STRIPE_WEBHOOK_SECRET": LOCALSTRIPE_WEBHOOK_SECRET,
            "STRIPE_API_BASE": f"http://127.0.0.1:{stripe_port}",
        }
    # An empty value counts as unset, like settings.py's own defaults do.
    return {name: value for name, value in wanted.items() if not environ.get(name, "").strip()}


def main(argv: list[str] | None = None) -> None:
    """Set the development defaults and the database, then supervise the platform."""
    parser = argparse.ArgumentParser(prog="make run", description=__doc__)
    parser.add_argument(
        "--no-seed", action="store_true", help="do not create or repair the demo data"
    )
    args = parser.parse_args(argv)
    os.environ.update(development_defaults(os.environ))
    label = "DATABASE_URL"
    server = None
    if not os.environ.get("DATABASE_URL", "").strip():
        print("==> starting the embedded PostgreSQL (data in var/pgdata)", flush=True)
        url, server = database_url("run")
        os.environ["DATABASE_URL"] = url
        label = "embedded PostgreSQL, data in var/pgdata"

    import django
    from django.core.management.base import CommandError

    django.setup()
    from devstack.supervisor import Supervisor

    try:
        Supervisor(database_label=label).run(no_seed=args.no_seed)
    except CommandError as error:
        sys.exit(f"==> {error}")
    finally:
        if server is not None:
            print("==> stopping the embedded PostgreSQL", flush=True)
            server.cleanup()


if __name__ == "__main__":
    main()
