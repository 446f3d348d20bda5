"""`manage.py check --deploy` is clean under production settings.

Each case starts Django in a fresh process (settings are read once per process)
with only the variables a production deployment sets: DEBUG off, real-looking
secrets, a host name. The HTTPS settings are on by default then; the suite
itself turns the redirect off because it serves plain HTTP.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Variables that must come from each case, never from the environment running the suite.
OWN_PREFIXES = ("DJANGO_", "STRIPE_", "SECURE_", "TOLLGATE_")
OWN_NAMES = {
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "DATABASE_URL",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "CSRF_TRUSTED_ORIGINS",
}


def production(tmp_path: Path, **overrides: str) -> dict[str, str]:
    clean = {
        k: v for k, v in os.environ.items() if k not in OWN_NAMES and not k.startswith(OWN_PREFIXES)
    }
    return {
        **clean,
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "billing.example.com",
        "DATABASE_URL": "postgres://tollgate@db.example.com:5432/tollgate",
        "STRIPE_SECRET_KEY": "sk_live_" + secrets.token_hex(24),
        "STRIPE_PUBLISHABLE_KEY": "pk_live_" + secrets.token_hex(24),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(16),
        **overrides,
    }


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_deploy_check_is_clean_in_production(tmp_path):
    result = manage(production(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


HTTPS_SETTINGS = {
    "SECURE_SSL_REDIRECT": "security.W008",
    "SESSION_COOKIE_SECURE": "security.W012",
    "CSRF_COOKIE_SECURE": "security.W016",
    "SECURE_HSTS_SECONDS": "security.W004",
}


def test_the_check_notices_each_https_setting_turned_off(tmp_path):
    """The clean result above is the settings' doing: turn them off and the check says so."""
    env = production(tmp_path, **dict.fromkeys(HTTPS_SETTINGS, "0"))
    result = manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    for warning in HTTPS_SETTINGS.values():
        assert warning in result.stdout + result.stderr


SETTINGS_SCRIPT = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({name: getattr(s, name, None) for name in [
    "SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE",
    "SECURE_HSTS_SECONDS", "SECURE_PROXY_SSL_HEADER"]}))
"""


def settings_of(env: dict[str, str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", SETTINGS_SCRIPT],
        env={**env, "DJANGO_SETTINGS_MODULE": "platform_core.settings"},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_development_keeps_plain_http(tmp_path):
    """`make run` (DEBUG on, plain HTTP on 127.0.0.1) must not redirect or pin HTTPS."""
    env = production(tmp_path, DEBUG="1")
    assert settings_of(env) == {
        "SECURE_SSL_REDIRECT": False,
        "SESSION_COOKIE_SECURE": False,
        "CSRF_COOKIE_SECURE": False,
        "SECURE_HSTS_SECONDS": 0,
        "SECURE_PROXY_SSL_HEADER": None,
    }


def test_behind_a_tls_proxy_the_forwarded_scheme_is_trusted_only_when_told(tmp_path, settings):
    assert settings.SECURE_PROXY_SSL_HEADER is None  # this process was not told
    told = settings_of(production(tmp_path, SECURE_PROXY_SSL_HEADER="1"))
    assert told["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
