"""Authentication: bearer tokens for API clients, the Django session for a same-site browser.

The rule: bearer comes before session in every `auth=[…]` list, because
django-ninja's session auth enforces CSRF and would refuse a bearer POST.

Every bearer request reads its token and user from the database (nothing is
cached between requests), so a revoked token or a deactivated user is refused
from the next request on. The lookup is one indexed query (`platform_core.sql`).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth import authenticate
from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer, SessionAuth

from kernel.errors import DomainError, ErrorCode, PermissionDeniedError
from platform_core import sql
from platform_core.models import ApiToken

TOKEN_PREFIX = "tg_"


class InvalidCredentialsError(DomainError):
    code = ErrorCode.NOT_AUTHENTICATED
    status = 401


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def api_token_create(*, username: str, password: str, name: str = "") -> tuple[str, ApiToken]:
    """Exchange a username and password for a new bearer token (shown once)."""
    user = authenticate(username=username, password=password)
    if user is None or not user.is_active:
        raise InvalidCredentialsError("The username or password is wrong.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, digest=_digest(raw), prefix=raw[:10], name=name[:100]
    )
    return raw, token


def api_token_revoke(*, token: ApiToken) -> None:
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_token_lookup(raw: str) -> ApiToken | None:
    """The live token with this raw value, its active user loaded (`token.user`); or None."""
    return sql.api_token_with_user(digest=_digest(raw))


class BearerAuth(HttpBearer):
    def __call__(self, request: HttpRequest):
        # request.META, not request.headers: the latter copies every header first.
        value = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, token = value.partition(" ")
        if not token or scheme.lower() != self.openapi_scheme:
            return None
        return self.authenticate(request, token)

    def authenticate(self, request: HttpRequest, token: str):
        if not token.startswith(TOKEN_PREFIX):
            return None
        row = api_token_lookup(token)
        if row is None:
            return None
        now = timezone.now()
        # Touch at most once a minute, so a busy client does not write on every request.
        if row.last_used_at is None or now - row.last_used_at > timedelta(minutes=1):
            ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
        request.user = row.user
        request.auth_token = row
        return row.user


class SessionUserAuth(SessionAuth):
    """The Django session, checked for CSRF only when there is a session user.

    Without this, a request whose bearer token was refused would fall through
    to the CSRF check and answer 403, so a client could not tell an expired
    token (401, renew it) from a forbidden action.
    """

    def __call__(self, request: HttpRequest):
        if not request.user.is_authenticated:
            return None
        return super().__call__(request)


class StaffBearerAuth(BearerAuth):
    def authenticate(self, request: HttpRequest, token: str):
        user = super().authenticate(request, token)
        if user is not None and not user.is_staff:
            raise PermissionDeniedError("This action is for staff only.")
        return user


class StaffSessionAuth(SessionUserAuth):
    def authenticate(self, request: HttpRequest, key):
        user = super().authenticate(request, key)
        if user is not None and not user.is_staff:
            raise PermissionDeniedError("This action is for staff only.")
        return user


# Bearer first: see the module docstring.
user_auth = [BearerAuth(), SessionUserAuth()]
staff_auth = [StaffBearerAuth(), StaffSessionAuth()]
