"""Django's admin app, with Tollgate's site as the default (`admin.site`).

Imported while apps load, so it imports no model: the site class is named by
its path and imported only when the site is first used.
"""

from django.contrib.admin.apps import AdminConfig


class TollgateAdminConfig(AdminConfig):
    default_site = "backoffice.site.TollgateAdminSite"
