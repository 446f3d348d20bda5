"""The one versioned API: mounts every app's router and renders every error the same way.

The rule: every failure a client sees is `{"code", "message", "extra"}` with
the right status; nothing here or below answers a bare string or a traceback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from decimal import Decimal
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Router, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser

from billing.api import catalog_router, payments_router
from billing.api.webhooks import webhook_receive
from credits.api import router as credits_router
from kernel.errors import DomainError, ErrorCode
from kernel.schemas import ErrorOut
from kernel.storable_json import storable_json_loads
from platform_core.auth import api_token_create, user_auth
from platform_core.ratelimit.services import RateLimitedError, client_ip, rate_limit_hit

log = logging.getLogger(__name__)

# The database dropped the connection or refused one (a restart, a failover), or
# aborted the transaction to be retried: the client may simply try again.
DatabaseUnavailable = (OperationalError, InterfaceError)


class ExactJsonParser(Parser):
    """Parse JSON numbers with a fraction as `Decimal`, so no amount is ever a float; refuse
    what PostgreSQL cannot store (U+0000, lone surrogates, NaN, deep nesting) with a 422,
    before any of it reaches a service (`kernel.storable_json`)."""

    def parse_body(self, request: HttpRequest):
        return storable_json_loads(request.body, parse_float=Decimal)


class TollgateAPI(NinjaAPI):
    """Django Ninja's API, whose schema says that every operation may answer 422.

    A query string holding U+0000 is refused with 422 `invalid_input` before any
    view runs (`NulInQueryRefusedMiddleware`), whatever the operation reads.
    """

    def get_openapi_schema(self, **kwargs):
        schema = super().get_openapi_schema(**kwargs)
        invalid = {
            "description": "Invalid input",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
        }
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if isinstance(operation, dict) and "responses" in operation:
                    operation["responses"].setdefault(422, invalid)
        return schema


api = TollgateAPI(
    title="Tollgate API",
    version="1",
    description="Orders, payments, credits and bookings. Amounts are integers in the "
    "currency's minor unit unless a field says otherwise.",
    urls_namespace="api-1",
    parser=ExactJsonParser(),
    docs_url="/docs",
    # Fail closed: every operation needs a user unless it says `auth=None`.
    auth=user_auth,
)

_STATUS_CODES = {
    400: ErrorCode.INVALID_INPUT,
    401: ErrorCode.NOT_AUTHENTICATED,
    403: ErrorCode.PERMISSION_DENIED,
    404: ErrorCode.NOT_FOUND,
    409: ErrorCode.ORDER_STATE_CONFLICT,
    422: ErrorCode.INVALID_INPUT,
    429: ErrorCode.RATE_LIMITED,
}


def error_response(
    request: HttpRequest, status: int, code: str, message: str, extra: dict | None = None
) -> HttpResponse:
    return api.create_response(
        request, {"code": str(code), "message": message, "extra": extra or {}}, status=status
    )


@api.exception_handler(DomainError)
def _domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    return error_response(request, exc.status, exc.code, exc.message, exc.extra)


@api.exception_handler(RateLimitedError)
def _rate_limited_error(request: HttpRequest, exc: RateLimitedError) -> HttpResponse:
    response = error_response(request, exc.status, exc.code, exc.message, exc.extra)
    response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [
        {"loc": list(e.get("loc", [])), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors
    ]
    fields = ", ".join(".".join(str(p) for p in e["loc"][1:] or e["loc"]) for e in errors)
    return error_response(
        request, 422, ErrorCode.INVALID_INPUT, f"Invalid input: {fields}.", {"errors": errors}
    )


@api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(request, 401, ErrorCode.NOT_AUTHENTICATED, "Authentication is required.")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if exc.status_code == 400 and isinstance(exc.__cause__, DomainError):
        # django-ninja wraps whatever the body parser raised; ours says what was wrong.
        return _domain_error(request, exc.__cause__)
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError):
        # django-ninja's own wording for a body its parser could not read.
        return error_response(
            request, 422, ErrorCode.INVALID_INPUT, "The request body is not valid JSON."
        )
    code = _STATUS_CODES.get(exc.status_code, ErrorCode.INTERNAL_ERROR)
    return error_response(request, exc.status_code, code, str(exc.message))


@api.exception_handler(RequestDataTooBig)
def _body_too_large(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    # Django refuses to read a body over its limit; the client must send less, not retry.
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return error_response(
        request,
        413,
        ErrorCode.INVALID_INPUT,
        f"A request body is at most {limit} bytes.",
        {"limit": limit},
    )


@api.exception_handler(SuspiciousOperation)
def _suspicious(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    # What Django refuses while reading a request (too many fields, a bad header).
    return error_response(request, 400, ErrorCode.INVALID_INPUT, "The request is malformed.")


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error_response(request, 404, ErrorCode.NOT_FOUND, "Not found.")


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    if isinstance(exc, DatabaseUnavailable):
        # PostgreSQL is restarting or out of reach: a retry soon will work.
        log.warning("database unavailable on %s %s: %s", request.method, request.path, exc)
        response = error_response(
            request,
            HTTPStatus.SERVICE_UNAVAILABLE,
            ErrorCode.INTERNAL_ERROR,
            "The service is briefly unavailable; nothing was done. Try again shortly.",
        )
        response["Retry-After"] = "5"
        return response
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(
        request,
        HTTPStatus.INTERNAL_SERVER_ERROR,
        ErrorCode.INTERNAL_ERROR,
        "Something went wrong on our side; nothing was charged twice. Try again.",
    )


# --- the Stripe webhook ----------------------------------------------------------------


@csrf_exempt
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """`POST /api/v1/payments/webhook/` as a plain view, routed ahead of the API.

    Stripe's deliveries are the busiest request; this skips django-ninja's
    routing, parsing and response validation, about a quarter of what the web
    layer itself spends on one. Its answers and errors are the operation's
    (`payments_webhook`, which documents it in the schema): the same function,
    the same error handlers.
    """
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        return JsonResponse(webhook_receive(request))
    except DomainError as exc:
        return _domain_error(request, exc)
    except Exception as exc:
        return _unexpected(request, exc)


# --- auth -------------------------------------------------------------------------
auth_router = Router(tags=["auth"])


class TokenIn(Schema):
    model_config = {"extra": "forbid"}

    username: str
    password: str
    name: str = ""


class TokenOut(Schema):
    token: str
    token_type: str = "Bearer"
    prefix: str


@auth_router.post(
    "/token/", auth=None, response={201: TokenOut, 401: ErrorOut, 422: ErrorOut, 429: ErrorOut}
)
def auth_token_create(request: HttpRequest, payload: TokenIn):
    """A bearer token for a username and password; 429 with `Retry-After` past the rate
    (`TOLLGATE["RATE_LIMITS"]["auth_token"]`, per client IP and username)."""
    raw, token = api_token_create(
        username=payload.username, password=payload.password, name=payload.name
    )
    return Status(201, TokenOut(token=raw, prefix=token.prefix))


# --- rate limits ----------------------------------------------------------------------
# Operation (function name, which is also its OpenAPI operation id) → the scope in
# TOLLGATE["RATE_LIMITS"] and who is counted. Applied here, at the composition root,
# so the apps need not import platform_core; each operation declares its 429.
RATE_LIMITED_OPERATIONS: dict[str, tuple[str, Callable[..., str]]] = {
    "auth_token_create": (
        "auth_token",
        lambda request, payload, **_: f"{client_ip(request)}\n{payload.username.strip().lower()}",
    ),
    "payments_create": ("payments_create", lambda request, **_: str(request.user.pk)),
    "payments_methods_setup": ("card_setup", lambda request, **_: str(request.user.pk)),
    # Paying an order again reaches Stripe as a create does: one budget.
    "payments_order_pay": ("payments_create", lambda request, **_: str(request.user.pk)),
}


def _rate_limit_applied(view_func: Callable[..., Any]) -> Callable[..., Any]:
    """Count each call of a rate-limited operation before it runs (after auth and parsing)."""
    rule = RATE_LIMITED_OPERATIONS.get(view_func.__name__)
    if rule is None:
        return view_func
    scope, identity = rule

    @functools.wraps(view_func)
    def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        rate_limit_hit(scope=scope, identity=identity(request, **kwargs))
        return view_func(request, *args, **kwargs)

    return limited


api.add_decorator(_rate_limit_applied)
api.add_router("/auth", auth_router)
api.add_router("/catalog", catalog_router)
api.add_router("/payments", payments_router)
api.add_router("/credits", credits_router)
api.add_router("/bookings", "bookings.api.router")
api.add_router("", "backoffice.api.router")  # /admin/dashboard/, /me/export/
