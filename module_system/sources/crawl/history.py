"""What the last successful crawl saw of each page, kept in one cursor of the state store:
the validators for conditional requests (``ETag``, ``Last-Modified``), the version and key
the page landed under, and its links, so an unchanged page (HTTP 304) still leads the
crawl to the pages behind it."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

CURSOR_NAME = "web.pages"


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


class CrawlHistory:
    """The previous run's memory (read-only) and this run's (filled as pages are seen)."""

    def __init__(self, previous: dict[str, PageMemory] | None = None) -> None:
        self.previous = previous or {}
        self._current: dict[str, PageMemory] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, cursors: Any, enabled: bool = True) -> CrawlHistory:
        raw = cursors.get(CURSOR_NAME) if enabled else None
        if not raw:
            return cls()
        try:
            pages = orjson.loads(raw)
            return cls({url: PageMemory(**memory) for url, memory in pages.items()})
        except (orjson.JSONDecodeError, TypeError, AttributeError):
            return cls()  # an unreadable memory only costs one full crawl

    def remember(self, url: str, memory: PageMemory) -> None:
        with self._lock:
            self._current[url] = memory

    def save(self, cursors: Any) -> None:
        with self._lock:
            pages = {url: asdict(memory) for url, memory in self._current.items()}
        cursors.set(CURSOR_NAME, orjson.dumps(pages).decode())
