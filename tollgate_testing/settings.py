"""Django settings for a purchase type's own test suite: Tollgate's, with test values.

`DJANGO_SETTINGS_MODULE = "tollgate_testing.settings"`. Every variable it sets
is only a default: the environment wins. The database is chosen as `make test`
chooses it: `DATABASE_URL`, else the PostgreSQL at 127.0.0.1:5432 when one
answers, else an embedded PostgreSQL started for the run.
"""

from __future__ import annotations

import os

from devstack.database import database_url

TEST_DEFAULTS = {
    "DEBUG": "0",
    "SECRET_KEY": "tollgate-testing-secret-key-not-for-production",
    "ALLOWED_HOSTS": "*",
    "CONN_MAX_AGE": "0",
    "SECURE_SSL_REDIRECT": "0",
    "STRIPE_SECRET_KEY": "sk_test_localstripe",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_localstripe",
    "STRIPE_WEBHOOK_SECRET": "whsec_tollgate_testing",
    # Replaced by the address of the session's development Stripe when a test asks for it.
    "STRIPE_API_BASE": "http://127.0.0.1:9",
}
for _name, _value in TEST_DEFAULTS.items():
    os.environ.setdefault(_name, _value)
if not os.environ.get("DATABASE_URL", "").strip():
    # The embedded server, when one is started, stops with this process.
    os.environ["DATABASE_URL"], _embedded = database_url("tests")

from platform_core.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
