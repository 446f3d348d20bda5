"""Write the API's OpenAPI schema, the source of the TypeScript client's types.

    DEBUG=1 python -m webclient.openapi_export clients/typescript/schema.json

`make client` runs this and then openapi-typescript over the file. The rule:
`clients/typescript/schema.json` is exactly what this writes for the current
API; `tests/webclient/test_typescript_client.py` fails when it is not.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def openapi_schema() -> dict[str, Any]:
    """The schema `/api/v1/openapi.json` serves, as plain JSON data."""
    from platform_core.api import api

    return json.loads(json.dumps(api.get_openapi_schema()))


def openapi_schema_text(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python -m webclient.openapi_export OUTPUT.json")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "platform_core.settings")
    import django

    django.setup()
    Path(argv[0]).write_text(openapi_schema_text(openapi_schema()), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
