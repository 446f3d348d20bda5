from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from platform_core.api import api, stripe_webhook
from platform_core.ops.health import healthz, readyz
from platform_core.ops.metrics import metrics

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    # Ahead of the API: Stripe's deliveries skip django-ninja (see `stripe_webhook`).
    path("api/v1/payments/webhook/", stripe_webhook, name="stripe_webhook"),
    path("api/v1/", api.urls),
]
if settings.WEB_CLIENT:
    urlpatterns.append(path("", include("webclient.urls")))
