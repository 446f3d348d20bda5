"""Which purchase-type plugins are loaded, from which package, at which version.

The rule: read-only. The registry is asked for its plugins; each plugin's own
`tollgate_purchase_types` implementation is called directly (no hook call, so
nothing here touches `pm.hook`), and versions come from package metadata.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from types import ModuleType

from purchasables.registry import registry
from purchasables.types import PurchaseType


@dataclass(frozen=True)
class PluginInfo:
    name: str
    module: str
    distribution: str  # "" when no installed package provides the module
    version: str
    purchase_types: list[PurchaseType]


def _module_of(plugin: object) -> str:
    return plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__


def plugins_loaded() -> list[PluginInfo]:
    providers = importlib.metadata.packages_distributions()
    found = []
    for name, plugin in registry.plugins():
        module = _module_of(plugin)
        distributions = providers.get(module.split(".")[0], [])
        distribution = distributions[0] if distributions else ""
        try:
            version = importlib.metadata.version(distribution) if distribution else ""
        except importlib.metadata.PackageNotFoundError:
            version = ""
        declared = getattr(plugin, "tollgate_purchase_types", None)
        types = list(declared() or []) if callable(declared) else []
        found.append(PluginInfo(name, module, distribution, version, types))
    return sorted(found, key=lambda p: p.name)
