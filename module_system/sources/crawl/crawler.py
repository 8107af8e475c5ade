"""The crawl: worker threads take tasks from the frontier, fetch (with retries), follow
redirects within scope, parse, queue the links, and hand one :class:`PageResult` per
fetched URL to the consumer, in the order pages finish.

The output queue is bounded, so a slow consumer (validation, upload) slows the crawl
down instead of letting pages pile up in memory.

Every request stays within the service's egress policy (:meth:`CrawlSettings.egress_policy`);
a URL the policy refuses (a robots.txt redirect, a sitemap or a sitemap's link on another
origin, a host resolving to a refused address) is not requested and is listed as ignored,
with the reason.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson

from module_system.errors import ItemVanished, ModuleSystemError, TerminalError
from module_system.retry import Retrier
from module_system.sources.crawl.extract import Extractor
from module_system.sources.crawl.fetcher import Fetcher, Response
from module_system.sources.crawl.frontier import Frontier, Request, Task
from module_system.sources.crawl.history import CrawlHistory, PageMemory
from module_system.sources.crawl.page import ParsedPage, parse_page
from module_system.sources.crawl.render import JsRenderer
from module_system.sources.crawl.robots import RobotsRules, agent_token, load_robots
from module_system.sources.crawl.sitemaps import sitemap_urls
from module_system.sources.crawl.urls import (
    LINK_CACHE_SIZE,
    Scope,
    asset_key,
    normalize_url,
    origin,
    page_key,
)
from module_system.sources.http.egress import EgressPolicy, EgressRefused
from module_system.text_encoding import charset_from_content_type, decode_html

log = logging.getLogger(__name__)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DONE = object()


@dataclass(frozen=True)
class CrawlSettings:
    start_urls: tuple[str, ...]
    scope: Scope
    max_depth: int | None = None
    max_pages: int = 10_000
    respect_robots_txt: bool = True
    concurrency: int = 8
    per_host_concurrency: int = 8
    delay: float = 0.0
    user_agent: str = "module-system"
    sitemaps: bool = False
    max_redirects: int = 5
    land_only: tuple[re.Pattern[str], ...] = ()  # empty: land every page
    allowed_origins: tuple[str, ...] = ()  # more origins requests may go to (sitemaps, CDNs)

    def egress_policy(self) -> EgressPolicy:
        """Requests may go to the start URLs' origins, ``allowed_origins`` and any host
        inside ``allowed_domains`` (public addresses only for the latter); cookies only
        go back to the start URLs' origins."""
        named = [*self.start_urls, *self.allowed_origins]
        return EgressPolicy.build(named, self.start_urls, self.scope.allowed)


@dataclass
class PageResult:
    """One fetched URL: a page to land (``body``), or a response listed but not landed
    (``skip_reason``), or one that failed (``error``)."""

    url: str
    key: str
    depth: int
    final_url: str | None = None
    status: int | None = None
    media_type: str | None = None
    body: bytes | None = None
    version: str | None = None
    encoding: str | None = None
    canonical: str | None = None
    records: bytes | None = None
    records_version: str | None = None
    not_modified: bool = False
    skip_reason: str | None = None
    error: ModuleSystemError | None = None

    def details(self) -> dict[str, Any]:
        """The manifest's extra fields for this URL."""
        fields = {
            "final_url": self.final_url, "status": self.status,
            "content_type": self.media_type, "depth": self.depth,
            "encoding": self.encoding, "canonical": self.canonical,
        }  # fmt: skip
        return {name: value for name, value in fields.items() if value is not None}


class _Skip(Exception):
    """Internal: this URL is listed with a reason, not landed."""


@dataclass
class Crawler:
    settings: CrawlSettings
    fetcher: Fetcher
    retrier: Retrier
    history: CrawlHistory = field(default_factory=CrawlHistory)
    extractor: Extractor | None = None
    renderer: JsRenderer | None = None
    cancel: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        s = self.settings
        self.frontier = Frontier(s.per_host_concurrency, s.delay, s.max_pages)
        self._out: queue.Queue[Any] = queue.Queue(maxsize=2 * s.concurrency)
        self._stopping = threading.Event()
        self._workers_left = s.concurrency
        self._lock = threading.Lock()
        self._seed_origins = {origin(u) for u in s.start_urls}
        self._refused_urls: set[str] = set()
        # the pages of a site share most of their links: each is judged once
        self._wanted = lru_cache(maxsize=LINK_CACHE_SIZE)(s.scope.wanted)

    def run(self) -> Iterator[PageResult]:
        """Crawl from the start URLs; yields results until the frontier is exhausted."""
        for url in self.settings.start_urls:
            self.frontier.add(url, 0)
        for number in range(self.settings.concurrency):
            threading.Thread(target=self._work, name=f"crawl-{number}", daemon=True).start()
        while (result := self._next_result()) is not _DONE:
            yield result
        f = self.frontier
        log.info(
            "crawl finished: %d pages fetched, %d disallowed by robots.txt, %d left by max_pages",
            f.dispatched, f.disallowed, f.dropped,
        )  # fmt: skip

    def _next_result(self) -> Any:
        while True:
            try:
                return self._out.get(timeout=0.5)
            except queue.Empty:
                if self.cancel.is_set():  # wake workers waiting on the frontier
                    self.frontier.stop()

    def stop(self) -> None:
        self._stopping.set()
        self.frontier.stop()

    def close(self) -> None:
        """Stop, and release the fetcher's connections and the browser, if any."""
        self.stop()
        self.fetcher.close()
        if self.renderer is not None:
            self.renderer.close()

    # workers -----------------------------------------------------------------------
    def _work(self) -> None:
        try:
            while not self.cancel.is_set() and (task := self.frontier.next()) is not None:
                try:
                    self._run_task(task)
                finally:
                    self.frontier.done(task)
        finally:
            with self._lock:
                self._workers_left -= 1
                last = self._workers_left == 0
            if last:
                self._emit(_DONE, force=True)

    def _run_task(self, task: Task) -> None:
        if task.request is None:
            self._load_robots(task.origin)
            return
        try:
            result = self.crawl(task.request)
        except Exception as exc:  # a bug must still show as a failed page, not vanish
            log.exception("%s: unexpected error", task.request.url)
            url = task.request.url
            error = TerminalError(f"{url}: internal error: {exc!r}")
            result = PageResult(url, asset_key(url), task.request.depth, error=error)
        self._emit(result)

    def _emit(self, item: Any, force: bool = False) -> None:
        while True:
            try:
                self._out.put(item, timeout=0.2)
                return
            except queue.Full:
                if self._stopping.is_set() and not force:
                    return
                if self._stopping.is_set():  # the consumer is gone: make room for _DONE
                    self._drain()

    def _drain(self) -> None:
        try:
            while True:
                self._out.get_nowait()
        except queue.Empty:
            pass

    def _load_robots(self, site: str) -> None:
        agent = agent_token(self.settings.user_agent)
        rules = RobotsRules(agent)
        try:
            if self.settings.respect_robots_txt:
                rules = self._robots(site, agent)
            if self.settings.sitemaps and site in self._seed_origins:
                self._seed_from_sitemaps(site, rules)
        finally:
            self.frontier.robots_loaded(site, rules)

    def _robots(self, site: str, agent: str) -> RobotsRules:
        try:
            return load_robots(self.fetcher, self.retrier, site, agent)
        except EgressRefused as exc:  # a redirect off the allowed origins: as if missing
            log.warning("%s/robots.txt: allowing everything: %s", site, exc)
            self._refused(exc)
            return RobotsRules(agent)

    def _seed_from_sitemaps(self, site: str, rules: RobotsRules) -> None:
        sitemaps = rules.sitemaps or [f"{site}/sitemap.xml"]
        policy = self.fetcher.policy
        for url in sitemap_urls(self.fetcher, self.retrier, sitemaps, self._refused):
            normal = normalize_url(url)
            if normal is None:
                continue
            if not policy.permits(normal):
                self._refused(policy.refusal(normal, "a link in a sitemap,"))
            elif self._wanted(normal):
                self.frontier.add(normal, 1)

    def _refused(self, error: EgressRefused) -> None:
        """List a URL the policy refused as ignored, once, with the reason."""
        with self._lock:
            if error.url in self._refused_urls:
                return
            self._refused_urls.add(error.url)
        self._emit(PageResult(error.url, asset_key(error.url), 0, skip_reason=str(error)))

    # one URL -------------------------------------------------------------------------
    def crawl(self, request: Request, follow: bool = True) -> PageResult:
        """Fetch one URL (following redirects) and turn the response into a result."""
        url = request.url
        memory = self.history.previous.get(url) if follow else None
        result = PageResult(url, asset_key(url), request.depth)
        try:
            response = self._get(url, memory.conditional_headers() if memory else {})
            result.final_url, result.status = response.url, response.status
            result.media_type = response.media_type or None
            if response.status == 304 and memory is not None:
                return self._not_modified(request, response, memory)
            self._check_status(response)
            return self._page(request, response, follow)
        except (_Skip, EgressRefused) as skip:  # EgressRefused: nothing was sent
            result.skip_reason = str(skip)
        except ModuleSystemError as exc:
            result.error = exc
        return result

    def _get(self, url: str, headers: dict[str, str]) -> Response:
        for _ in range(self.settings.max_redirects + 1):
            response = self._get_once(url, headers)
            location = response.headers.get("location")
            if response.status not in REDIRECT_STATUSES or not location:
                return response
            url, headers = self._redirect_target(url, location), {}
        raise _Skip(f"more than {self.settings.max_redirects} redirects")

    def _get_once(self, url: str, headers: dict[str, str]) -> Response:
        return self.retrier.call(lambda: self.fetcher.get(url, headers), f"GET {url}")

    def _redirect_target(self, url: str, location: str) -> str:
        target = normalize_url(location, url)
        if target is None or not self.settings.scope.allowed(target):
            raise _Skip(f"redirects to {location}, outside allowed_domains")
        self.fetcher.policy.check_origin(target, f"redirect from {url} to")
        if origin(target) != origin(url):  # another site: its robots.txt and delay apply
            queued = self.frontier.add(target, 0)
            raise _Skip(f"redirects to {target}" + (" (queued)" if queued else " (seen)"))
        rules = self.frontier.rules(origin(target))
        if rules is not None and not rules.allowed(target):
            raise _Skip(f"redirects to {target}, disallowed by robots.txt")
        if not self.frontier.claim(target):
            raise _Skip(f"redirects to {target}, crawled already")
        return target

    def _check_status(self, response: Response) -> None:
        if 400 <= response.status < 500:
            reason = f"http_{response.status}"
            raise ItemVanished(f"GET {response.url}: HTTP {response.status}", reason=reason)
        if not 200 <= response.status < 300:
            raise _Skip(f"HTTP {response.status}")
        if response.body is None:
            raise _Skip(response.note or f"not HTML ({response.media_type})")

    def _not_modified(self, request: Request, response: Response, memory: PageMemory) -> PageResult:
        self._follow(memory.links, request.depth)
        self.history.remember(request.url, memory)
        return PageResult(
            request.url, memory.key, request.depth, final_url=response.url, status=304,
            version=memory.version, records_version=memory.records_version, not_modified=True,
        )  # fmt: skip

    def _page(self, request: Request, response: Response, follow: bool) -> PageResult:
        assert response.body is not None
        body, final_url = response.body, response.url
        if self.renderer is not None:
            text, encoding = self.renderer.render(final_url), "utf-8"
            body = text.encode()
        else:
            declared = charset_from_content_type(response.headers.get("content-type"))
            text, encoding = decode_html(body, declared)
        page = parse_page(text, final_url, response.headers.get("x-robots-tag"))
        links = [link for link in page.links if self._wanted(link)]
        if follow:
            self._follow(links, request.depth)
        result = PageResult(
            request.url, page_key(final_url), request.depth, final_url=final_url,
            status=response.status, media_type=response.media_type, body=body,
            version=_version(body), encoding=encoding, canonical=page.canonical,
        )  # fmt: skip
        self._dedupe_and_index(result, page)
        self._extract(result, page)
        if result.skip_reason is None and final_url == request.url:
            self.history.remember(request.url, _memory(result, response, links))
        return result

    def _follow(self, links: list[str], depth: int) -> None:
        limit = self.settings.max_depth
        if limit is None or depth < limit:
            for link in links:
                self.frontier.add(link, depth + 1)

    def _dedupe_and_index(self, result: PageResult, page: ParsedPage) -> None:
        canonical = page.canonical
        if canonical and canonical != result.final_url and self.settings.scope.allowed(canonical):
            if not self.frontier.claim(canonical):
                result.skip_reason = f"duplicate of {canonical} (rel=canonical)"
                return
            result.key = page_key(canonical)
        if page.noindex:
            result.skip_reason = "noindex (meta robots)"
        elif self.settings.land_only and not any(
            p.search(result.final_url or "") for p in self.settings.land_only
        ):
            result.skip_reason = "links only: not matched by land_only"

    def _extract(self, result: PageResult, page: ParsedPage) -> None:
        if self.extractor is None or result.skip_reason is not None:
            return
        records = self.extractor.extract(page.tree)
        if records:
            result.records = b"".join(orjson.dumps(r) + b"\n" for r in records)
            result.records_version = _version(result.records)


def _version(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _memory(result: PageResult, response: Response, links: list[str]) -> PageMemory:
    assert result.version is not None
    return PageMemory(
        key=result.key, version=result.version, etag=response.headers.get("etag"),
        last_modified=response.headers.get("last-modified"), links=links,
        records_version=result.records_version,
    )  # fmt: skip
