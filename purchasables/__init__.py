"""The plugin API for purchase types, and the built-in purchase types.

Plugin authors import `hookimpl` from here and the dataclasses from
`purchasables.types`; nothing else in this package is part of the API.
"""

import pluggy

PROJECT_NAME = "tollgate"
ENTRY_POINT_GROUP = "tollgate.purchasables"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["ENTRY_POINT_GROUP", "PROJECT_NAME", "hookimpl"]
