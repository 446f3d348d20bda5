"""The unified metadata carried by an order and by every Stripe object made for it.

The rules: it is built and checked against Stripe's limits before anything is
written or sent, so an over-long request is refused (422) with nothing created;
and every Stripe object Tollgate makes carries `DEPLOYMENT_KEY` with this
deployment's name (`metadata_marker`). Other systems on the same Stripe account
use `order_id` too: an object found only by its metadata is ours only with the
marker (`metadata_is_ours`), never by `order_id` alone.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from kernel.errors import DomainError, ErrorCode

MAX_KEYS = 50
MAX_KEY_LENGTH = 40
MAX_VALUE_LENGTH = 500
# The metadata key that marks a Stripe object as made by this deployment.
DEPLOYMENT_KEY = "tollgate_deployment"


class MetadataTooLargeError(DomainError):
    code = ErrorCode.METADATA_TOO_LARGE
    status = 422


class NotOursError(Exception):
    """A Stripe object that is provably another system's (no marker of this deployment,
    a customer we do not know). Its event is recorded as such and never retried."""

    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def metadata_marker() -> dict[str, str]:
    """The key and value that mark a Stripe object as this deployment's."""
    return {DEPLOYMENT_KEY: settings.TOLLGATE["DEPLOYMENT"]}


def metadata_is_ours(metadata: dict[str, str]) -> bool:
    """Whether Stripe metadata carries this deployment's marker."""
    return metadata.get(DEPLOYMENT_KEY) == settings.TOLLGATE["DEPLOYMENT"]


def metadata_build(
    *,
    order_id: int,
    user_id: int,
    order_type: str,
    purchase_type: str,
    plugin_metadata: dict[str, str],
    scheduling_data: dict[str, Any] | None,
) -> dict[str, str]:
    metadata = {
        **{str(k): str(v) for k, v in plugin_metadata.items()},
        "order_id": str(order_id),
        "user_id": str(user_id),
        "order_type": order_type,
        "purchase_type": purchase_type,
        **metadata_marker(),
    }
    if scheduling_data:
        metadata["scheduling_data"] = json.dumps(
            scheduling_data, separators=(",", ":"), sort_keys=True, default=str
        )
    metadata_check(metadata)
    return metadata


def metadata_check(metadata: dict[str, str]) -> None:
    if len(metadata) > MAX_KEYS:
        raise MetadataTooLargeError(
            f"Stripe accepts at most {MAX_KEYS} metadata keys; this order needs {len(metadata)}.",
            keys=len(metadata),
        )
    for key, value in metadata.items():
        if len(key) > MAX_KEY_LENGTH:
            raise MetadataTooLargeError(
                f"The metadata key {key[:MAX_KEY_LENGTH]!r}… is longer than "
                f"{MAX_KEY_LENGTH} characters.",
                key=key,
            )
        if len(value) > MAX_VALUE_LENGTH:
            raise MetadataTooLargeError(
                f"The metadata value of {key!r} is {len(value)} characters; Stripe accepts "
                f"at most {MAX_VALUE_LENGTH}.",
                key=key,
                length=len(value),
            )
