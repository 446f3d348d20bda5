"""A JSON client for Tollgate's API, and a buyer who holds a bearer token."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from django.test import Client


class ApiClient:
    """Django's test client speaking JSON to /api/v1/, optionally with a bearer token."""

    def __init__(self, token: str | None = None) -> None:
        self.client = Client()
        self.token = token

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        out = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**out, **(headers or {})}

    def get(self, path: str, **params: Any):
        return self.client.get("/api/v1" + path, params, headers=self._headers(None))

    def post(self, path: str, body: Any = None, *, raw: bytes | None = None, headers=None):
        data = raw if raw is not None else json.dumps(body if body is not None else {})
        return self.client.post(
            "/api/v1" + path, data, content_type="application/json", headers=self._headers(headers)
        )

    def delete(self, path: str):
        return self.client.delete("/api/v1" + path, headers=self._headers(None))


@dataclass
class Buyer:
    user: Any
    password: str
    api: ApiClient

    @classmethod
    def create(cls, **fields: Any) -> Buyer:
        """A new user, and a bearer token issued to them the way a client gets one."""
        from django.contrib.auth import get_user_model

        from platform_core.auth import api_token_create

        password = secrets.token_urlsafe(16)
        name = fields.pop("username", f"buyer-{secrets.token_hex(4)}")
        user = get_user_model().objects.create_user(
            username=name, email=f"{name}@example.com", password=password, **fields
        )
        raw, _ = api_token_create(username=user.username, password=password)
        return cls(user=user, password=password, api=ApiClient(raw))
