"""Give the API's routing errors the API's error shape; refuse a query string holding U+0000.

The rule: under /api/, a client never receives an HTML page. Django's own 404
for an unknown path and django-ninja's 405 for a wrong method are rewritten to
`{"code", "message", "extra"}`; responses that are already JSON pass untouched.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

from kernel.errors import ErrorCode

_REWRITTEN = {
    404: (ErrorCode.NOT_FOUND, "There is nothing at this path."),
    405: (ErrorCode.METHOD_NOT_ALLOWED, "This path does not accept that method."),
}


class ApiErrorShapeMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        rewrite = _REWRITTEN.get(response.status_code)
        if (
            rewrite is None
            or not request.path.startswith("/api/")
            or response.get("Content-Type", "").startswith("application/json")
        ):
            return response
        code, message = rewrite
        extra = {"allowed": response["Allow"].split(", ")} if response.has_header("Allow") else {}
        shaped = JsonResponse(
            {"code": code, "message": message, "extra": extra}, status=response.status_code
        )
        if response.has_header("Allow"):
            shaped["Allow"] = response["Allow"]
        return shaped


class NulInQueryRefusedMiddleware:
    """Refuse a query string holding U+0000 (`%00`), before any view runs.

    PostgreSQL's text cannot hold the character, so a filter built from such a
    parameter (an admin list filter, an API query) fails in the database, a 500.
    No query means anything with it; the API's JSON bodies are checked by its parser.
    The API answers 422 `invalid_input`, as for any other invalid parameter (the
    status its schema documents); other pages answer 400.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING")
        if not query or ("%00" not in query and "\x00" not in query):
            return self.get_response(request)
        message = "The query string may not contain the character U+0000."
        if request.path.startswith("/api/"):
            return JsonResponse(
                {"code": ErrorCode.INVALID_INPUT, "message": message, "extra": {}}, status=422
            )
        return HttpResponseBadRequest(message)
