"""Settings from the environment: production refuses to boot half-configured.

Each case starts Django in a fresh interpreter, because settings are read once
per process; the environment is this one's minus every variable under test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]
UNDER_TEST = (
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "DATABASE_URL",
    "STRIPE_SECRET_KEY",
    "STRIPE_PUBLISHABLE_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "STRIPE_API_BASE",
)
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "a-real-secret-key-for-this-test",
    "ALLOWED_HOSTS": "billing.example.com",
    "STRIPE_SECRET_KEY": "sk_test_settings",
    "STRIPE_PUBLISHABLE_KEY": "pk_test_settings",
    "STRIPE_WEBHOOK_SECRET": "whsec_settings",
    "DATABASE_URL": "postgres://tollgate@db.example.com:5432/tollgate",
}
SCRIPT = """
import json, os, django
os.environ['DJANGO_SETTINGS_MODULE'] = 'platform_core.settings'
django.setup()
from django.conf import settings
print(json.dumps({
    'DEBUG': settings.DEBUG,
    'SECRET_KEY': settings.SECRET_KEY,
    'ALLOWED_HOSTS': settings.ALLOWED_HOSTS,
    'STRIPE_WEBHOOK_SECRETS': settings.STRIPE_WEBHOOK_SECRETS,
}))
"""


def start_django(**env: str) -> subprocess.CompletedProcess:
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in UNDER_TEST and not key.startswith("STRIPE_")
    }
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**clean, **env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def started(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def refused_names(result: subprocess.CompletedProcess) -> set[str]:
    """The settings named in the ImproperlyConfigured that stopped start-up."""
    assert result.returncode != 0, result.stdout
    last = result.stderr.strip().splitlines()[-1]
    prefix = "django.core.exceptions.ImproperlyConfigured: "
    assert last.startswith(prefix), result.stderr
    listed = last.removeprefix(prefix).split(": ", 1)[1].split(" (", 1)[0]
    return {name.strip() for name in listed.split(",")}


def test_production_without_secrets_refuses_to_start():
    result = start_django(DEBUG="0", ALLOWED_HOSTS="billing.example.com")

    assert refused_names(result) == {
        "SECRET_KEY",
        "STRIPE_SECRET_KEY",
        "STRIPE_PUBLISHABLE_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "DATABASE_URL",
    }


def test_debug_unset_means_production():
    result = start_django()

    assert refused_names(result) == {
        "SECRET_KEY",
        "STRIPE_SECRET_KEY",
        "STRIPE_PUBLISHABLE_KEY",
        "STRIPE_WEBHOOK_SECRET",
        "ALLOWED_HOSTS",
        "DATABASE_URL",
    }


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"SECRET_KEY": "django-insecure-tollgate-development-only"}, "SECRET_KEY"),
        ({"STRIPE_WEBHOOK_SECRET": " , "}, "STRIPE_WEBHOOK_SECRET"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS"),
        ({"DATABASE_URL": ""}, "DATABASE_URL"),
    ],
    ids=["dev-secret-key", "blank-webhook-secrets", "no-allowed-hosts", "no-database"],
)
def test_production_names_the_one_bad_setting(override, named):
    assert refused_names(start_django(**{**PRODUCTION, **override})) == {named}


def test_production_with_everything_set_starts():
    loaded = started(start_django(**PRODUCTION))

    assert loaded["DEBUG"] is False
    assert loaded["SECRET_KEY"] == PRODUCTION["SECRET_KEY"]
    assert loaded["ALLOWED_HOSTS"] == ["billing.example.com"]


def test_debug_with_nothing_set_starts_on_development_defaults():
    loaded = started(start_django(DEBUG="1"))

    assert loaded["DEBUG"] is True
    assert loaded["SECRET_KEY"]
    assert loaded["ALLOWED_HOSTS"]
    assert loaded["STRIPE_WEBHOOK_SECRETS"] == []


def test_several_webhook_secrets_for_rotation():
    loaded = started(start_django(**{**PRODUCTION, "STRIPE_WEBHOOK_SECRET": "a, b"}))

    assert loaded["STRIPE_WEBHOOK_SECRETS"] == ["a", "b"]


DATABASE_OPTIONS_SCRIPT = """
import json, os, django
os.environ['DJANGO_SETTINGS_MODULE'] = 'platform_core.settings'
django.setup()
from django.conf import settings
print(json.dumps(settings.DATABASES['default'].get('OPTIONS', {})))
"""


def database_options(**env: str) -> dict:
    clean = {key: value for key, value in os.environ.items() if key not in UNDER_TEST}
    result = subprocess.run(
        [sys.executable, "-c", DATABASE_OPTIONS_SCRIPT],
        env={**clean, **PRODUCTION, **env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return started(result)


def test_postgresql_statements_are_prepared_unless_turned_off():
    url = "postgres://tollgate@db.example.com:5432/tollgate"
    on = database_options(DATABASE_URL=url)
    assert on["server_side_binding"] is True
    assert on["prepare_threshold"] == 5
    off = database_options(DATABASE_URL=url, DATABASE_PREPARED_STATEMENTS="0")
    assert "server_side_binding" not in off
    assert "prepare_threshold" not in off


def test_a_database_other_than_postgresql_is_refused():
    result = start_django(DEBUG="1", DATABASE_URL="sqlite:///x.sqlite3")
    assert result.returncode != 0
    assert "PostgreSQL only" in result.stderr


@pytest.mark.django_db
def test_a_statement_run_often_is_prepared_on_its_connection():
    from django.db import connection

    for _ in range(6):
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM auth_user WHERE id > %s", [0])
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any("FROM auth_user WHERE id > $1" in statement for statement in prepared), prepared


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SECRET_KEY", "change-me"),
        ("SECRET_KEY", "django-insecure-0123456789abcdefghijklmnopqrstuvwxyz0123456789"),
        ("STRIPE_SECRET_KEY", "sk_test_replace_me"),
        ("STRIPE_PUBLISHABLE_KEY", "pk_test_replace_me"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_replace_me"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_real_one,whsec_replace_me"),
    ],
    ids=["example-key", "insecure-key", "example-sk", "example-pk", "example-whsec", "one-of-two"],
)
def test_production_refuses_the_example_values(name, value):
    result = start_django(**{**PRODUCTION, name: value})

    assert refused_names(result) == {name}
    assert "example or development values" in result.stderr


def test_every_example_value_of_env_example_is_refused():
    example = dict(
        line.split("=", 1)
        for line in (PROJECT_ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    names = {"SECRET_KEY", "STRIPE_SECRET_KEY", "STRIPE_PUBLISHABLE_KEY", "STRIPE_WEBHOOK_SECRET"}

    result = start_django(**{**PRODUCTION, **{name: example[name] for name in names}})

    assert refused_names(result) == names


def test_development_may_use_the_example_values():
    started(start_django(DEBUG="1", SECRET_KEY="change-me", STRIPE_SECRET_KEY="sk_test_replace_me"))


DEPLOY_READY = {
    **PRODUCTION,
    "SECRET_KEY": "k7Qv2-real-looking-secret-9fJx0pLmN4bZs8TgW1yHcE6uRdA3oIq5VtKeX",
}


def entrypoint_check(**env: str) -> subprocess.CompletedProcess:
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in UNDER_TEST and not key.startswith(("STRIPE_", "SECURE_", "SILENCED_"))
    }
    clean["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{clean.get('PATH', '')}"
    return subprocess.run(
        [str(PROJECT_ROOT / "deploy" / "entrypoint.sh"), "check"],
        env={**clean, **env},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_entrypoint_starts_nothing_that_check_deploy_flags():
    assert entrypoint_check(**DEPLOY_READY).returncode == 0

    weak_key = entrypoint_check(**{**DEPLOY_READY, "SECRET_KEY": "short-but-not-a-placeholder"})
    assert weak_key.returncode != 0
    assert "security.W009" in weak_key.stderr

    no_redirect = entrypoint_check(**{**DEPLOY_READY, "SECURE_SSL_REDIRECT": "0"})
    assert no_redirect.returncode != 0
    assert "security.W008" in no_redirect.stderr


def test_an_operator_may_silence_a_check_by_name():
    # Behind a proxy that redirects to HTTPS itself.
    silenced = entrypoint_check(
        **{**DEPLOY_READY, "SECURE_SSL_REDIRECT": "0", "SILENCED_SYSTEM_CHECKS": "security.W008"}
    )
    assert silenced.returncode == 0, silenced.stderr


WEB_CLIENT_SCRIPT = """
import json, os, django
os.environ['DJANGO_SETTINGS_MODULE'] = 'platform_core.settings'
django.setup()
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
client = Client()
from django.apps import apps
from django.contrib.staticfiles import finders
answers = {p: client.get(p).status_code for p in ('/', '/healthz', '/api/v1/openapi.json')}
answers['installed'] = apps.is_installed('webclient')
answers['static'] = finders.find('web/app.js') is not None
print(json.dumps(answers))
"""


@pytest.mark.parametrize(("setting", "page", "on"), [("1", 200, True), ("0", 404, False)])
def test_the_reference_web_client_can_be_turned_off(setting, page, on):
    clean = {key: value for key, value in os.environ.items() if key not in UNDER_TEST}
    result = subprocess.run(
        [sys.executable, "-c", WEB_CLIENT_SCRIPT],
        env={**clean, **PRODUCTION, "TOLLGATE_WEB_CLIENT": setting, "SECURE_SSL_REDIRECT": "0",
             "ALLOWED_HOSTS": "testserver"},
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started(result) == {
        "/": page,
        "/healthz": 200,
        "/api/v1/openapi.json": 200,
        # Off, the app is not installed: neither its page nor its static files are served.
        "installed": on,
        "static": on,
    }
