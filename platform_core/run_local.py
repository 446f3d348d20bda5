"""`make run`'s entry point: put development defaults in the environment, then start Django.

    python -m platform_core.run_local

Django reads its settings once, at import, and with DEBUG off they refuse to
start without production secrets; so the defaults have to be in `os.environ`
before Django is imported. This module sets them, never overriding a variable
the user already set, and then runs `manage.py run_local` (the orchestrator) in
this same process; the children it starts inherit the same environment.

Which Stripe: without `STRIPE_SECRET_KEY` in the environment, localstripe (the
fake Stripe server) on 127.0.0.1; with it, real Stripe, and nothing Stripe-related
is defaulted.

The one rule: nothing in this module imports Django before `main()` has set the
environment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

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
    """Set the development defaults, then run `manage.py run_local` with `argv`."""
    os.environ.update(development_defaults(os.environ))

    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", "run_local", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    main()
