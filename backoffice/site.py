"""The admin site: Django's, with the operations pages and every change audited.

The rule: every ModelAdmin registered here is given `AuditedAdminMixin`, so
what the admin logs (adds, changes, deletions, and what actions log) is also
written to the append-only audit log; no app has to know the platform exists.
Each is given the site's stylesheet too (`ops/admin.css`, lists that fit a laptop).
`backoffice.admin_config.TollgateAdminConfig` makes this the default site
(`admin.site`), the way Django documents overriding it.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin import AdminSite, ModelAdmin
from django.http import HttpRequest
from django.urls import URLPattern, path, reverse

from backoffice.audit import AuditedAdminMixin

# Every admin page's own stylesheet, on top of Django's.
ADMIN_CSS = "ops/admin.css"


class _SiteMedia:
    css = {"all": [ADMIN_CSS]}


# (url name, label, permission) of the pages that are not about one model.
OPS_PAGES = (
    ("ops_dashboard", "Financial dashboard", "platform_core.view_dashboard"),
    ("ops_plugins", "Plugins", "platform_core.view_plugins"),
)


class TollgateAdminSite(AdminSite):
    site_header = "Tollgate"
    site_title = "Tollgate admin"
    index_title = "Run the business"

    def register(self, model_or_iterable, admin_class=None, **options) -> None:
        admin_class = admin_class or ModelAdmin
        bases = (admin_class,)
        if not issubclass(admin_class, AuditedAdminMixin):
            bases = (AuditedAdminMixin, admin_class)
        admin_class = type(
            admin_class.__name__,
            bases,
            {
                "__module__": admin_class.__module__,
                "__qualname__": admin_class.__qualname__,
                # Added to the class's own Media, never in its place.
                "Media": _SiteMedia,
            },
        )
        super().register(model_or_iterable, admin_class, **options)

    def get_urls(self) -> list[URLPattern]:
        from backoffice import views

        pages = [
            path("ops/dashboard/", self.admin_view(views.dashboard_page), name="ops_dashboard"),
            path("ops/plugins/", self.admin_view(views.plugins_page), name="ops_plugins"),
        ]
        return pages + super().get_urls()

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[dict]:
        app_list = super().get_app_list(request, app_label)
        if app_label is not None:
            return app_list
        links: list[dict[str, Any]] = [
            {
                "name": label,
                "object_name": name,
                "admin_url": reverse(f"{self.name}:{name}"),
                "add_url": None,
                "view_only": True,
                "perms": {"view": True},
            }
            for name, label, permission in OPS_PAGES
            if request.user.has_perm(permission)
        ]
        if links:
            app_list.insert(
                0,
                {
                    "name": "Operations",
                    "app_label": "ops",
                    "app_url": links[0]["admin_url"],
                    "has_module_perms": True,
                    "models": links,
                },
            )
        return app_list
