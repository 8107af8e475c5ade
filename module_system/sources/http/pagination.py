"""Pagination styles: one small class each, after dlt's ``BasePaginator``.

The API source asks the paginator to set up the first request (:meth:`init_request`),
then after each page calls :meth:`update_state` (read the next page's reference from the
page) and, while :attr:`has_next_page`, :meth:`update_request`. A numbered paginator that
has read a total also names every page still to come (``remaining_values``), so the
source may request those pages ahead of need. Loop guards live here: cursor and URL
paginators refuse a reference they have already followed, and numbered paginators notice
a page that repeats the previous one (APIs that clamp the page number and serve their
last page forever).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urljoin

import httpx
import orjson
from pydantic import Field

from module_system import json_path
from module_system.config.models import StrictModel
from module_system.errors import TerminalError
from module_system.observability.redaction import mask_url


@dataclass
class PageRequest:
    """What changes from one page's request to the next: the URL and the query."""

    url: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    """One response. ``records`` is None when the body is unreadable (``problem`` says why)."""

    number: int
    url: str  # the URL requested, before auth added anything
    response: httpx.Response
    data: Any = json_path.MISSING
    records: list[Any] | None = None
    problem: str | None = None
    fetched_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class BasePaginator(ABC):
    """Reads the next page's reference from a page and puts it into the next request."""

    def __init__(self, stop_on_empty_page: bool = True) -> None:
        self.has_next_page = True
        self.stop_on_empty_page = stop_on_empty_page

    def init_request(self, request: PageRequest) -> None:
        """Set up the first request (e.g. ``page=1``). Optional."""

    def is_repeat(self, page: Page) -> bool:
        """True when ``page`` repeats the previous one, ending pagination. Optional."""
        return False

    @abstractmethod
    def update_state(self, page: Page) -> None:
        """Read the next reference from ``page``; clear :attr:`has_next_page` at the end."""

    @abstractmethod
    def update_request(self, request: PageRequest) -> None:
        """Point ``request`` at the next page."""


class SinglePagePaginator(BasePaginator):
    def update_state(self, page: Page) -> None:
        self.has_next_page = False

    def update_request(self, request: PageRequest) -> None:
        pass


class NumberedPaginator(BasePaginator):
    """A number in a query parameter that grows by ``step`` per page (page or offset)."""

    def __init__(
        self, param: str, start: int, step: int, total_path: str | None, stop_on_empty_page: bool
    ) -> None:
        super().__init__(stop_on_empty_page)
        self.param, self.start, self.step, self.total_path = param, start, step, total_path
        self.value = start  # of the next page to request
        self.total: float | None = None  # at total_path in the last page, when a number
        self._previous: int | None = None

    def init_request(self, request: PageRequest) -> None:
        request.params[self.param] = self.value

    def is_repeat(self, page: Page) -> bool:
        content = page.response.content if page.records is None else orjson.dumps(page.records)
        # Python's keyed 64-bit hash, not SHA-256: hashlib lets go of the GIL for anything
        # over 2 KB, and on the page path the job's thread then waited up to the switch
        # interval (5 ms) to get it back from the threads landing files (py-spy: 11 % of
        # the GIL's time of a 500-page job). The key is random per process, so no page can
        # be made to look like another; by accident, 1 in 2**64.
        digest = hash(content)
        repeat, self._previous = digest == self._previous, digest
        return repeat

    def update_state(self, page: Page) -> None:
        self.value += self.step
        if self.total_path is None:
            return
        total = json_path.lookup(page.data, self.total_path)
        self.total = total if isinstance(total, int | float) else None
        if self.total is not None and self.value >= self._end(self.total):
            self.has_next_page = False

    def _end(self, total: float) -> int:
        """The first value past the last page. Page numbers: ``total`` counts pages."""
        return self.start + math.ceil(total * self.step)

    def remaining_values(self) -> range | None:
        """The parameter values of the pages still to request, :attr:`value` (the next
        page's) first, as the total in the last page read says; None while no total is
        known (no ``total_path``, or the last page had no number there)."""
        if self.total is None:
            return None
        return range(self.value, self._end(self.total), self.step)

    def update_request(self, request: PageRequest) -> None:
        request.params[self.param] = self.value


class OffsetPaginator(NumberedPaginator):
    def __init__(self, config: OffsetPagination) -> None:
        super().__init__(
            config.offset_param, config.start, config.limit, config.total_path,
            config.stop_on_empty_page,
        )  # fmt: skip
        self.limit_param, self.limit = config.limit_param, config.limit

    def init_request(self, request: PageRequest) -> None:
        request.params[self.limit_param] = self.limit
        super().init_request(request)

    def _end(self, total: float) -> int:
        """Offsets: ``total`` counts records."""
        return math.ceil(total)


class _ReferencePaginator(BasePaginator):
    """Follows a reference (cursor or URL) read from each page; refuses one seen before."""

    def __init__(self, stop_on_empty_page: bool) -> None:
        super().__init__(stop_on_empty_page)
        self.reference: str | None = None
        self._seen: dict[str, int] = {}

    @abstractmethod
    def _next_reference(self, page: Page) -> str | None:
        """The next cursor or URL in ``page``, or None at the end."""

    def update_state(self, page: Page) -> None:
        reference = self._next_reference(page)
        if not reference:
            self.has_next_page = False
            return
        if reference in self._seen:
            raise TerminalError(
                f"pagination loop: page {page.number} of {mask_url(page.url)} points back to "
                f"{mask_url(reference)!r}, already followed after page {self._seen[reference]}"
            )
        self._seen[reference] = page.number
        self.reference = reference


class CursorPaginator(_ReferencePaginator):
    def __init__(self, config: CursorPagination) -> None:
        super().__init__(config.stop_on_empty_page)
        self.cursor_path, self.param = config.cursor_path, config.param

    def _next_reference(self, page: Page) -> str | None:
        cursor = json_path.lookup(page.data, self.cursor_path)
        return None if cursor is json_path.MISSING or cursor is None else str(cursor)

    def update_request(self, request: PageRequest) -> None:
        request.params[self.param] = self.reference


class _UrlPaginator(_ReferencePaginator):
    def update_request(self, request: PageRequest) -> None:
        assert self.reference is not None
        request.url, request.params = self.reference, {}  # the URL carries its own query


class NextUrlPaginator(_UrlPaginator):
    """The next page's URL in the body; relative URLs resolve against the current one."""

    def __init__(self, config: NextUrlPagination) -> None:
        super().__init__(config.stop_on_empty_page)
        self.path = config.path

    def _next_reference(self, page: Page) -> str | None:
        link = json_path.lookup(page.data, self.path)
        if link is json_path.MISSING or not link:
            return None
        return urljoin(page.url, str(link))


class LinkHeaderPaginator(_UrlPaginator):
    """RFC 8288 ``Link: <...>; rel="next"`` (GitHub and many others)."""

    def __init__(self, config: LinkHeaderPagination) -> None:
        super().__init__(config.stop_on_empty_page)
        self.rel = config.rel

    def _next_reference(self, page: Page) -> str | None:
        link = page.response.links.get(self.rel, {}).get("url")
        return urljoin(page.url, link) if link else None


class _PaginationConfig(StrictModel):
    stop_on_empty_page: bool = Field(True, description="a page with no records ends pagination")


class NoPagination(_PaginationConfig):
    type: Literal["none"] = Field("none", description="one request: the first response only")

    def build(self) -> BasePaginator:
        return SinglePagePaginator(self.stop_on_empty_page)


class PageNumberPagination(_PaginationConfig):
    """``page=1, 2, ...`` until an empty page, or the page count at ``total_path``."""

    type: Literal["page_number"] = Field(description="a page number in a query parameter")
    param: str = Field("page", description="query parameter of the page number")
    start: int = Field(1, ge=0, description="number of the first page")
    total_path: str | None = Field(
        None, description="dotted path to the page count in a response; reached: the end"
    )

    def build(self) -> BasePaginator:
        return NumberedPaginator(
            self.param, self.start, 1, self.total_path, self.stop_on_empty_page
        )


class OffsetPagination(_PaginationConfig):
    """``offset=0&limit=100``, ``offset=100&limit=100``, ... until an empty page or the
    record count at ``total_path``."""

    type: Literal["offset"] = Field(description="a record offset and a limit in the query")
    offset_param: str = Field("offset", description="query parameter of the offset")
    limit_param: str = Field("limit", description="query parameter of the limit")
    limit: int = Field(100, ge=1, description="records asked for per page")
    start: int = Field(0, ge=0, description="offset of the first page")
    total_path: str | None = Field(
        None, description="dotted path to the record count in a response; reached: the end"
    )

    def build(self) -> BasePaginator:
        return OffsetPaginator(self)


class CursorPagination(_PaginationConfig):
    type: Literal["cursor"] = Field(
        description="a cursor read from each response, sent in the next"
    )
    cursor_path: str = Field(
        "next_cursor", description="dotted path to the next cursor; missing, null or '': the end"
    )
    param: str = Field("cursor", description="query parameter that carries the cursor")

    def build(self) -> BasePaginator:
        return CursorPaginator(self)


class NextUrlPagination(_PaginationConfig):
    type: Literal["next_url"] = Field(description="the next page's URL in each response")
    path: str = Field(
        "next", description="dotted path to the next page's URL, absolute or relative to the page"
    )

    def build(self) -> BasePaginator:
        return NextUrlPaginator(self)


class LinkHeaderPagination(_PaginationConfig):
    type: Literal["link_header"] = Field(description="the next page's URL in an RFC 8288 Link")
    rel: str = Field("next", description="relation of the Link header entry to follow")

    def build(self) -> BasePaginator:
        return LinkHeaderPaginator(self)


PaginationConfig = Annotated[
    NoPagination
    | PageNumberPagination
    | OffsetPagination
    | CursorPagination
    | NextUrlPagination
    | LinkHeaderPagination,
    Field(discriminator="type"),
]
