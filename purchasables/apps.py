from django.apps import AppConfig
from django.conf import settings


class PurchasablesConfig(AppConfig):
    name = "purchasables"
    verbose_name = "Purchase types"

    def ready(self) -> None:
        from purchasables.builtin import BUILTIN_PLUGINS
        from purchasables.registry import registry

        if registry.purchase_types():
            return  # already started (ready() may run twice in some test runners)
        for name, plugin in BUILTIN_PLUGINS:
            registry.register(plugin, name=name)
        if settings.TOLLGATE["PLUGINS_AUTOLOAD"]:
            registry.load_entry_points()
