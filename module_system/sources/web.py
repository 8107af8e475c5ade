"""Web source: crawl a site politely and land its HTML pages (and extracted records).

For a crawler the listing *is* the crawl: which pages exist depends on the pages fetched.
So :meth:`WebSource.list_items` runs the crawl (its own worker threads, see
:mod:`module_system.sources.crawl`) and yields one item per fetched URL with the page
already in memory; :meth:`WebSource.fetch` writes it out. Responses that are not landed
(not HTML, too large, ``noindex``, duplicates) are yielded with a ``skip_reason`` so the
manifest still lists them; 4xx responses are reported as vanished, not retried.

Keys: ``{host}/{path}`` of the page's canonical URL, one-to-one (see
:func:`~module_system.sources.crawl.urls.page_key`), landing under
``data/web/{service_id}/scraped/``; records beside each page as
``{page key}.records.jsonl``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from module_system._version import __version__
from module_system.config.models import StrictModel
from module_system.errors import ConfigError, TerminalError
from module_system.sources.base import RemoteItem, Source, SourceContext
from module_system.sources.crawl.crawler import Crawler, CrawlSettings, PageResult
from module_system.sources.crawl.extract import Extractor
from module_system.sources.crawl.fetcher import Fetcher
from module_system.sources.crawl.frontier import Request
from module_system.sources.crawl.history import CrawlHistory
from module_system.sources.crawl.render import JsRenderer
from module_system.sources.crawl.urls import RECORDS_SUFFIX, Scope, normalize_url
from module_system.sources.http.egress import EgressPolicy, OriginList

# Links to these are not followed (Scrapy's LinkExtractor list): they are never HTML.
_SKIPPED = (
    "7z 7zip bz2 rar tar tar.gz xz zip mng pct bmp gif jpg jpeg png pst psp tif tiff ai drw "
    "dxf eps ps svg cdr ico webp mp3 wma ogg wav ra aac mid au aiff 3gp asf asx avi mov mp4 "
    "mpg qt rm swf wmv m4a m4v flv webm xls xlsm xlsx xltm xltx potm potx ppt pptm pptx pps "
    "doc docb docm docx dotm dotx odt ods odg odp css pdf exe bin rss dmg iso apk jar sh rb js "
    "hta bat cpl msi msp py"
)
SKIPPED_EXTENSIONS = _SKIPPED.split()
DEFAULT_USER_AGENT = f"module-system/{__version__} (+https://github.com/module-system)"


class WebSourceConfig(StrictModel):
    """The ``source:`` block of a ``type: web`` service (see docs/sources/web.md)."""

    start_urls: list[str] = Field(
        min_length=1, description="where the crawl starts (http/https); always fetched"
    )
    allowed_domains: list[str] = Field(default_factory=list, description="default: start hosts")
    max_depth: int | None = Field(None, ge=0, description="links from a start URL; None: any")
    max_pages: int = Field(
        10_000, ge=1, description="URLs fetched at most (robots.txt, sitemaps aside)"
    )
    include: list[str] = Field(default_factory=list, description="regexes; follow only matches")
    exclude: list[str] = Field(default_factory=list, description="regexes; links not followed")
    land_only: list[str] = Field(default_factory=list, description="regexes; others: links only")
    skip_extensions: list[str] = Field(
        default_factory=lambda: list(SKIPPED_EXTENSIONS),
        description="links whose path ends in one of these are not followed",
    )
    respect_robots_txt: bool = Field(True, description="obey robots.txt, Crawl-delay included")
    concurrency: int = Field(8, ge=1, le=256, description="requests in flight in all")
    per_host_concurrency: int | None = Field(None, ge=1, description="default: concurrency")
    delay: float = Field(0.0, ge=0, description="seconds between request starts per host")
    user_agent: str = Field(
        DEFAULT_USER_AGENT, min_length=1, description="sent with every request; add a contact"
    )
    sitemaps: bool = Field(False, description="also seed from each start origin's sitemaps")
    render_js: bool = Field(False, description="render HTML pages in headless Chromium")
    chromium_path: str | None = Field(
        None, description="browser for render_js; unset: chromium on PATH, else Playwright's"
    )
    max_page_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="bigger responses are not read (listed as ignored)"
    )
    max_redirects: int = Field(5, ge=0, le=30, description="redirect hops per URL")
    request_timeout: float = Field(
        30.0, gt=0, description="seconds per request (connect, read, pool)"
    )
    allowed_origins: OriginList = Field(default_factory=list, description="see security.md")

    @field_validator("start_urls")
    @classmethod
    def _http_urls(cls, urls: list[str]) -> list[str]:
        normal = [normalize_url(url) for url in urls]
        bad = [url for url, n in zip(urls, normal, strict=True) if n is None]
        if bad:
            raise ValueError(f"not http(s) URLs: {', '.join(bad)}")
        return [n for n in normal if n]

    @field_validator("include", "exclude", "land_only")
    @classmethod
    def _regexes(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
        return patterns

    def settings(self) -> CrawlSettings:
        domains = self.allowed_domains or [_host(url) for url in self.start_urls]
        return CrawlSettings(
            start_urls=tuple(self.start_urls),
            scope=Scope.build(domains, self.include, self.exclude, self.skip_extensions),
            max_depth=self.max_depth, max_pages=self.max_pages,
            respect_robots_txt=self.respect_robots_txt, concurrency=self.concurrency,
            per_host_concurrency=self.per_host_concurrency or self.concurrency,
            delay=self.delay, user_agent=self.user_agent, sitemaps=self.sitemaps,
            max_redirects=self.max_redirects,
            land_only=tuple(re.compile(p) for p in self.land_only),
            allowed_origins=tuple(self.allowed_origins),
        )  # fmt: skip


def _host(url: str) -> str:
    return urlsplit(url).hostname or ""


class WebSource(Source):
    """Crawls from ``start_urls`` within ``allowed_domains``; every HTML page is an item."""

    type_name = "web"
    config_model = WebSourceConfig
    landing_area = "scraped"

    def __init__(self, crawler: Crawler, context: SourceContext) -> None:
        self.crawler = crawler
        self.context = context
        self._complete = False

    @classmethod
    def from_config(cls, config: WebSourceConfig, context: SourceContext) -> Self:
        settings = config.settings()
        policy = settings.egress_policy()
        fetcher = Fetcher(
            config.user_agent, config.request_timeout, config.max_page_bytes,
            config.concurrency, policy,
        )  # fmt: skip
        try:
            crawler = Crawler(
                settings,
                fetcher,
                context.make_retrier(),
                CrawlHistory.load(context.cursors, enabled=not context.full_refresh),
                Extractor.from_config(context.extract) if context.extract else None,
                _renderer(config, policy),
                context.cancel,
            )
        except ConfigError:
            fetcher.close()
            raise
        return cls(crawler, context)

    def list_items(self) -> Iterator[RemoteItem]:
        for result in self.crawler.run():
            yield from _items(result)
        self._complete = not self.context.cancel.is_set()

    def fetch(self, item: RemoteItem, dest: Path) -> None:
        error = item.extra.get("error")
        if error is not None:  # the crawl already retried it
            if isinstance(error, TerminalError):
                raise error
            raise TerminalError(str(error)) from error
        body = item.extra.get("body")
        if body is None:  # HTTP 304 but the state store lost the landed copy: fetch again
            body = self._refetch(item)
        dest.write_bytes(body)

    def _refetch(self, item: RemoteItem) -> bytes:
        result = self.crawler.crawl(item.extra["request"], follow=False)
        if result.error is not None:
            raise TerminalError(str(result.error)) from result.error
        body = result.records if item.key.endswith(RECORDS_SUFFIX) else result.body
        if body is None:
            raise TerminalError(f"{item.uri}: {result.skip_reason or 'no content'} on refetch")
        return body

    def commit(self) -> None:
        if self._complete:
            self.crawler.history.save(self.context.cursors)

    def close(self) -> None:
        self.crawler.close()


def _renderer(config: WebSourceConfig, policy: EgressPolicy) -> JsRenderer | None:
    if not config.render_js:
        return None
    return JsRenderer(config.user_agent, config.request_timeout, config.chromium_path, policy)


def _items(result: PageResult) -> Iterator[RemoteItem]:
    details = result.details()
    if result.error is not None:
        yield RemoteItem(result.key, result.url, extra={"error": result.error, "details": details})
        return
    if result.skip_reason is not None:
        details["skip_reason"] = result.skip_reason
        extra: dict[str, Any] = {"skip_reason": result.skip_reason, "details": details}
        yield RemoteItem(result.key, result.url, extra=extra)
        return
    request = Request(result.url, result.depth)
    yield _landable(result.key, result.url, result.version, result.body, request, details)
    if result.records_version is not None:
        key = result.key + RECORDS_SUFFIX
        yield _landable(key, result.url, result.records_version, result.records, request, details)


def _landable(
    key: str, url: str, version: str | None, body: bytes | None, request: Request, details: Any
) -> RemoteItem:
    size = len(body) if body is not None else None
    extra = {"body": body, "request": request, "details": details}
    return RemoteItem(key, url, size=size, version=version, extra=extra)
