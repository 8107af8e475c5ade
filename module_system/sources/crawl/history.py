"""What the last successful crawl saw of each page, kept in one cursor of the state store:
the validators for conditional requests (``ETag``, ``Last-Modified``), the version and key
the page landed under, and its links, so an unchanged page (HTTP 304) still leads the
crawl to the pages behind it.

Stored compactly, in memory and in the cursor: every URL once in a table, each page's
links as numbers into it (a site's navigation links are shared by all its pages), the
whole zlib-compressed. A cursor in the format of earlier versions (one JSON object of
link lists) is not read: page keys changed with this format, so the first run after an
upgrade is one full crawl.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import zlib
from array import array
from dataclasses import dataclass, field
from typing import Any

import orjson

log = logging.getLogger(__name__)
CURSOR_NAME = "web.pages"
FORMAT_PREFIX = "z2:"  # base64 of zlib of {"urls": [...], "pages": [[url, key, ...]]}
_Row = tuple[str, str, str | None, str | None, str | None, array]  # see PageTable.put


@dataclass(frozen=True)
class PageMemory:
    key: str
    version: str
    etag: str | None = None
    last_modified: str | None = None
    links: list[str] = field(default_factory=list)
    records_version: str | None = None

    def conditional_headers(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers


class PageTable:
    """Page memories by URL, each URL held once; links are numbers into the URL table."""

    def __init__(self, urls: list[str] | None = None) -> None:
        self._urls: list[str] = urls or []
        self._numbers = {url: number for number, url in enumerate(self._urls)}
        self._pages: dict[int, _Row] = {}

    def __len__(self) -> int:
        return len(self._pages)

    def put(self, url: str, memory: PageMemory) -> None:
        links = array("I", (self._number(link) for link in memory.links))
        m = memory
        self._pages[self._number(url)] = (
            m.key, m.version, m.etag, m.last_modified, m.records_version, links
        )  # fmt: skip

    def get(self, url: str) -> PageMemory | None:
        number = self._numbers.get(url)
        row = self._pages.get(number) if number is not None else None
        if row is None:
            return None
        key, version, etag, last_modified, records_version, links = row
        urls = [self._urls[n] for n in links]
        return PageMemory(key, version, etag, last_modified, urls, records_version)

    def _number(self, url: str) -> int:
        number = self._numbers.get(url)
        if number is None:
            number = self._numbers[url] = len(self._urls)
            self._urls.append(url)
        return number

    def dumps(self) -> str:
        pages = [[number, *row[:5], row[5].tolist()] for number, row in self._pages.items()]
        document = orjson.dumps({"urls": self._urls, "pages": pages})
        return FORMAT_PREFIX + base64.b64encode(zlib.compress(document, 6)).decode("ascii")

    @classmethod
    def loads(cls, raw: str) -> PageTable:
        """Raises ValueError (or TypeError) on anything but what :meth:`dumps` wrote."""
        if not raw.startswith(FORMAT_PREFIX):
            raise ValueError("not the compact crawl history format")
        document = orjson.loads(zlib.decompress(base64.b64decode(raw[len(FORMAT_PREFIX) :])))
        urls = document["urls"]
        if not all(isinstance(url, str) for url in urls):
            raise ValueError("a URL that is not a string")
        table = cls(urls)
        for entry in document["pages"]:
            number, row = _checked_row(entry, len(urls))
            table._pages[number] = row
        return table


def _checked_row(entry: list[Any], url_count: int) -> tuple[int, _Row]:
    number, key, version, etag, last_modified, records_version, links = entry
    if not (isinstance(key, str) and isinstance(version, str)):
        raise ValueError("a page without key or version")
    numbers = array("I", links)
    if not 0 <= number < url_count or any(n >= url_count for n in numbers):
        raise ValueError("a URL number out of range")
    return number, (key, version, etag, last_modified, records_version, numbers)


class CrawlHistory:
    """The previous run's memory (read-only) and this run's (filled as pages are seen)."""

    def __init__(self, previous: PageTable | None = None) -> None:
        self.previous = previous or PageTable()
        self._current = PageTable()
        self._lock = threading.Lock()

    @classmethod
    def load(cls, cursors: Any, enabled: bool = True) -> CrawlHistory:
        raw = cursors.get(CURSOR_NAME) if enabled else None
        if not raw:
            return cls()
        try:
            return cls(PageTable.loads(raw))
        except (ValueError, TypeError, KeyError, OverflowError, zlib.error, binascii.Error):
            # an unreadable (or pre-upgrade) memory only costs one full crawl
            log.info("crawl history not readable or from an earlier version: full crawl")
            return cls()

    def remember(self, url: str, memory: PageMemory) -> None:
        with self._lock:
            self._current.put(url, memory)

    def save(self, cursors: Any) -> None:
        with self._lock:
            raw = self._current.dumps()
        cursors.set(CURSOR_NAME, raw)
