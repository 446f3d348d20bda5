"""Settings, read from the environment (`.env.example` lists every variable).

The one rule: with `DEBUG` off the platform refuses to start on a development
secret or without Stripe credentials, so a misconfigured production server fails
at boot rather than at its first payment.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
DEV_SECRET_KEY = "django-insecure-tollgate-development-only"


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", DEV_SECRET_KEY if DEBUG else "")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    # Django's admin with Tollgate's site as `admin.site` (backoffice.site).
    "backoffice.admin_config.TollgateAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Serves the interactive API docs (Swagger UI) from its own static files, not a CDN.
    "ninja",
    "django_q",
    "platform_core",
    "platform_core.ratelimit",
    "backoffice.apps.BackofficeConfig",
    "billing",
    "purchasables",
    "credits",
    "bookings",
]
# Purchase-type plugins that are Django apps (models, migrations, admin) name
# their app in the `tollgate.apps` entry-point group. Only the package metadata
# is read: importing a plugin before Django is configured would fail.
if env_bool("TOLLGATE_PLUGINS_AUTOLOAD", True):
    INSTALLED_APPS += sorted(
        {ep.value for ep in entry_points(group="tollgate.apps")} - set(INSTALLED_APPS)
    )

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Request id (and the user, once known) on every log line of the request.
    "platform_core.ops.logs.LogContextMiddleware",
    "platform_core.middleware.ApiErrorShapeMiddleware",
    "platform_core.middleware.NulInQueryRefusedMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "platform_core.urls"
WSGI_APPLICATION = "platform_core.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# PostgreSQL everywhere. Without DATABASE_URL, development (DEBUG on) uses the server
# at 127.0.0.1:5432; `make run` and `make test` always set it, starting an embedded
# server when no other is given.
DATABASE_URL = os.environ.get("DATABASE_URL", "").strip()
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL or "postgres://postgres@127.0.0.1:5432/tollgate",
        # django-q2 closes "old" connections around every enqueue and task: with
        # the default of 0 that is a new PostgreSQL connection each time.
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "600")),
    )
}
if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
    raise ImproperlyConfigured(
        f"DATABASE_URL names a {DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]} database; "
        "Tollgate runs on PostgreSQL only (postgres://user:password@host:5432/name)."
    )
if env_bool("DATABASE_PREPARED_STATEMENTS", True):
    # Parameters travel apart from the SQL, and a statement a connection has run
    # five times is prepared: PostgreSQL then skips parsing and planning it, which
    # was half of its work for a credit spend and a third for a webhook. Turn this
    # off behind a pooler that hands one client several server connections
    # (PgBouncer in transaction mode before 1.21).
    DATABASES["default"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        "server_side_binding": True,
        "prepare_threshold": 5,
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"

# --- Stripe -----------------------------------------------------------------
STRIPE_SECRET_KEY = os.environ.get("STRIPE_SECRET_KEY", "")
STRIPE_PUBLISHABLE_KEY = os.environ.get("STRIPE_PUBLISHABLE_KEY", "")
# Several secrets, comma-separated, so an endpoint secret can be rotated without
# dropping deliveries signed with the old one.
STRIPE_WEBHOOK_SECRETS = env_list("STRIPE_WEBHOOK_SECRET")
STRIPE_API_BASE = os.environ.get("STRIPE_API_BASE", "https://api.stripe.com")
STRIPE_MAX_NETWORK_RETRIES = int(os.environ.get("STRIPE_MAX_NETWORK_RETRIES", "2"))
STRIPE_TIMEOUT = int(os.environ.get("STRIPE_TIMEOUT", "30"))  # seconds per attempt
STRIPE_WEBHOOK_TOLERANCE = int(os.environ.get("STRIPE_WEBHOOK_TOLERANCE", "300"))
# The payment method types Tollgate offers (comma-separated, such as `card`), for
# PaymentIntents, SetupIntents and Checkout; empty: those the Stripe account enables.
STRIPE_PAYMENT_METHOD_TYPES = env_list("STRIPE_PAYMENT_METHOD_TYPES")
FRONTEND_URL = os.environ.get("FRONTEND_URL", "http://127.0.0.1:8000")

# --- Tollgate -----------------------------------------------------------------
TOLLGATE = {
    # Load third-party purchase types from the `tollgate.purchasables` entry points.
    "PLUGINS_AUTOLOAD": env_bool("TOLLGATE_PLUGINS_AUTOLOAD", True),
    # This deployment's name, put under `tollgate_deployment` in the metadata of every
    # Stripe object it makes: a payment, refund or subscription without it is another
    # system's. Give each deployment sharing a Stripe account its own (staging, prod).
    "DEPLOYMENT": os.environ.get("TOLLGATE_DEPLOYMENT", "tollgate"),
    # The purchase type `is_credit_purchase: true` stands for.
    "CREDIT_PURCHASE_TYPE": os.environ.get("TOLLGATE_CREDIT_PURCHASE_TYPE", "credits"),
    # Custom credit amounts: price per credit in the currency's minor unit.
    "CREDITS_CURRENCY": os.environ.get("TOLLGATE_CREDITS_CURRENCY", "usd"),
    "CREDITS_UNIT_AMOUNT": int(os.environ.get("TOLLGATE_CREDITS_UNIT_AMOUNT", "10")),
    "CREDITS_MIN": int(os.environ.get("TOLLGATE_CREDITS_MIN", "10")),
    "CREDITS_MAX": int(os.environ.get("TOLLGATE_CREDITS_MAX", "100000")),
    # Webhook event processing: attempts before an event is `failed`, and the
    # back-off schedule in seconds (the last value repeats).
    "EVENT_MAX_ATTEMPTS": int(os.environ.get("TOLLGATE_EVENT_MAX_ATTEMPTS", "8")),
    "EVENT_RETRY_BACKOFF": [5, 30, 120, 600, 1800, 3600],
    # Events one drain task processes before it yields the worker.
    "EVENT_DRAIN_BATCH": 200,
    # Requests a client may make per window ("10/min", "100/10m", "off"), counted in
    # the database so every web process shares them (platform_core.ratelimit).
    "RATE_LIMITS": {
        # Per client IP and username: bounds password guessing.
        "auth_token": os.environ.get("TOLLGATE_RATE_LIMIT_AUTH_TOKEN", "10/min"),
        # Per user: each create may reach Stripe.
        "payments_create": os.environ.get("TOLLGATE_RATE_LIMIT_PAYMENTS_CREATE", "30/min"),
        # Per user: each card setup reads or makes a SetupIntent at Stripe.
        "card_setup": os.environ.get("TOLLGATE_RATE_LIMIT_CARD_SETUP", "20/hour"),
    },
    # Unpaid seat holds: seats one user may hold in one session, and orders holding
    # seats or slots one user may have at once (0: no limit). A hold lives
    # BOOKING_HOLD_MINUTES and is never extended.
    "BOOKING_HOLD_MINUTES": int(os.environ.get("TOLLGATE_BOOKING_HOLD_MINUTES", "15")),
    "BOOKING_HOLD_SEATS_PER_SESSION": int(
        os.environ.get("TOLLGATE_BOOKING_HOLD_SEATS_PER_SESSION", "2")
    ),
    "BOOKING_HOLDS_PER_USER": int(os.environ.get("TOLLGATE_BOOKING_HOLDS_PER_USER", "5")),
    # Paying with credits: an unpaid order holding a buyer's credits (credits first,
    # the card for the rest) is cancelled, and the credits go back, after this long.
    "CREDITS_HOLD_MINUTES": int(os.environ.get("TOLLGATE_CREDITS_HOLD_MINUTES", "30")),
    # A buyer may cancel a booking paid with credits, for the credits back, until
    # this long before it starts.
    "BOOKING_CANCEL_CUTOFF_HOURS": int(
        os.environ.get("TOLLGATE_BOOKING_CANCEL_CUTOFF_HOURS", "24")
    ),
    # Reverse proxies in front of the web processes that append to X-Forwarded-For;
    # 0 means clients connect directly and REMOTE_ADDR is their address.
    "TRUSTED_PROXIES": int(os.environ.get("TOLLGATE_TRUSTED_PROXIES", "0")),
}

# --- django-q2: PostgreSQL (the ORM broker) is the queue, so enqueueing a task
# is part of the transaction that stores the webhook event.
Q_CLUSTER = {
    "name": "tollgate",
    "orm": "default",
    "workers": int(os.environ.get("Q_WORKERS", "2")),
    "timeout": 120,
    "retry": 180,  # must exceed timeout and the longest task
    "max_attempts": 1,  # the event table keeps its own attempt count
    "ack_failures": True,
    "save_limit": -1,  # successful results are not stored
    "bulk": 20,
    # How often an idle worker looks for a task: one indexed query each time. A stored
    # event rides on a queued drain task instead of bringing its own, so the queue is
    # often empty; at 0.2 s the receipt-to-processed lag at a steady 150 events/s had a
    # p50 of 130 ms, at 0.05 s 49 ms.
    "poll": 0.05,
    "catch_up": False,
    "label": "Task queue",
}

# --- HTTPS: on by default whenever DEBUG is off; each can be turned off in the
# environment (the test suite serves plain HTTP through Django's test client and
# live server, so its environment sets SECURE_SSL_REDIRECT=0).
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto, set
# SECURE_PROXY_SSL_HEADER=1 so Django knows the original request was HTTPS.
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
# A year of HSTS, subdomains included, once DEBUG is off. Lower it (or set 0)
# while first moving a domain to HTTPS: browsers remember it for that long.
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "0" if DEBUG else "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# --- Logs: one JSON object a line in production (LOG_FORMAT=json, the default with
# DEBUG off), carrying request, user, order and event ids; plain text in development.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain" if DEBUG else "json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "platform_core.ops.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # stripe-python logs whole request and response bodies at DEBUG, client
        # secrets included: never below INFO, whatever LOG_LEVEL says.
        "stripe": {"level": "INFO"},
    },
}

# Probes speak plain HTTP to the instance itself; they are not redirected to HTTPS.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]

# --- Production operation: static files, database liveness, metrics, worker
# status, error reporting (docs/operations.md). Kept together on purpose.
# WhiteNoise serves the collected static files from the web process itself.
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1,
    "whitenoise.middleware.WhiteNoiseMiddleware",
)
# First, so it counts and times every answer (platform_core.ops.metrics).
MIDDLEWARE.insert(0, "platform_core.ops.metrics.RequestMetricsMiddleware")
# Never inside the installed package: under the working directory by default
# (the image sets /app/static).
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or Path.cwd() / "var" / "static")
# Hashed names (cache-busting, served with a year's max-age) need `collectstatic`
# before start-up, so they are on where the files are collected first (the image).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if env_bool("STATIC_MANIFEST", False)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# A reused connection that idled is checked before its first query in a request, so a
# PostgreSQL restart costs a reconnect, not a 500 on each worker's next request
# (`platform_core.db`: one used moments ago is not pinged again).
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env_bool("CONN_HEALTH_CHECKS", True)
DATABASES["default"]["ENGINE"] = "platform_core.db"
# Checks `manage.py check --deploy` may skip (comma-separated ids), e.g.
# security.W008 behind a proxy that redirects to HTTPS itself.
SILENCED_SYSTEM_CHECKS = env_list("SILENCED_SYSTEM_CHECKS")
# GET /metrics (Prometheus): with METRICS_TOKEN set, only with
# `Authorization: Bearer <token>`; without it, only from METRICS_ALLOWED_NETS.
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
METRICS_ALLOWED_NETS = env_list("METRICS_ALLOWED_NETS", "127.0.0.1/32,::1/128")
# django-q2 keeps each cluster's status in a cache: a file cache shared by the
# processes of one host, so `manage.py qinfo` and the worker's health check see it.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "q_status": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": os.environ.get("Q_STATUS_DIR")
        or os.path.join(os.environ.get("TMPDIR", "/tmp"), "tollgate-q-status"),  # noqa: S108
    },
}
Q_CLUSTER["cache"] = "q_status"
# Whether this cluster runs the schedules (sweep, reconciliation). Every cluster
# may: django-q2 takes due schedules under a row lock, so each fires once. The
# production entrypoint gives the job to one `scheduler` process alone.
Q_CLUSTER["scheduler"] = env_bool("Q_SCHEDULER", True)
# Error reports (the `sentry` extra) and traces (the `otel` extra), each on when
# its endpoint is set; started by platform_core.ops.telemetry.
SENTRY_DSN = os.environ.get("SENTRY_DSN", "")
OTEL_EXPORTER_OTLP_ENDPOINT = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "")
# The reference web client at `/`; off for a deployment with its own front end
# (the API, the admin, the webhook and the probes stay).
WEB_CLIENT = env_bool("TOLLGATE_WEB_CLIENT", True)
if WEB_CLIENT:
    INSTALLED_APPS.append("webclient")
# Values copied from .env.example that must never reach production.
PLACEHOLDER_SECRETS = {"change-me", "sk_test_replace_me", "pk_test_replace_me", "whsec_replace_me"}

if not DEBUG:
    missing = [
        name
        for name, value in [
            ("SECRET_KEY", SECRET_KEY if SECRET_KEY != DEV_SECRET_KEY else ""),
            ("STRIPE_SECRET_KEY", STRIPE_SECRET_KEY),
            ("STRIPE_PUBLISHABLE_KEY", STRIPE_PUBLISHABLE_KEY),
            ("STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRETS),
            ("ALLOWED_HOSTS", ALLOWED_HOSTS),
            ("DATABASE_URL", DATABASE_URL),
        ]
        if not value
    ]
    if missing:
        raise ImproperlyConfigured(
            "DEBUG is off, so these settings must be set in the environment: "
            + ", ".join(missing)
            + " (see .env.example; `make run` sets development values)."
        )
    placeholders = [
        name
        for name, values in [
            ("SECRET_KEY", [SECRET_KEY]),
            ("STRIPE_SECRET_KEY", [STRIPE_SECRET_KEY]),
            ("STRIPE_PUBLISHABLE_KEY", [STRIPE_PUBLISHABLE_KEY]),
            ("STRIPE_WEBHOOK_SECRET", STRIPE_WEBHOOK_SECRETS),
        ]
        if any(v in PLACEHOLDER_SECRETS or v.startswith("django-insecure-") for v in values)
    ]
    if placeholders:
        raise ImproperlyConfigured(
            "DEBUG is off, so these settings must not hold example or development values: "
            + ", ".join(placeholders)
            + " (see .env.example for how to make real ones)."
        )
