"""Page-number pagination with bounds every list endpoint shares.

The rule: a page far enough out would make an OFFSET past PostgreSQL's bigint
(a 500); the bound turns it into a 422 like any other bad input.
"""

from ninja import Field, Schema
from ninja.pagination import PageNumberPagination

MAX_PAGE = 10_000_000


class BoundedPageNumberPagination(PageNumberPagination):
    class Input(Schema):
        page: int = Field(1, ge=1, le=MAX_PAGE)
        page_size: int | None = Field(None, ge=1)
