from django.contrib import admin
from django.urls import include, path

from platform_core.api import api
from platform_core.ops.health import healthz, readyz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("", include("platform_core.web.urls")),
]
