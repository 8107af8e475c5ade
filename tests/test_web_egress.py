"""The crawl's egress policy end to end: robots.txt redirects, sitemaps and links found in
sitemaps that leave the configured origins are not requested and are listed as ignored
with the reason; hosts inside ``allowed_domains`` that the config does not name get public
addresses only; Chromium's requests under ``render_js`` pass the same checks; one decision
of what is retried, counted by reason; a dead browser fails pages instead of hanging.

The site runs on 127.0.0.1, "other origins" on 127.0.0.2 and 127.0.0.3.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

from module_system.config.models import RetryConfig
from module_system.errors import ModuleSystemError
from module_system.retry import Retrier
from module_system.sources.base import RemoteItem, SourceContext
from module_system.sources.crawl.crawler import Crawler, CrawlSettings
from module_system.sources.crawl.fetcher import Fetcher
from module_system.sources.crawl.render import JsRenderer
from module_system.sources.crawl.urls import Scope
from module_system.sources.http.egress import EgressPolicy
from module_system.sources.web import WebSource, WebSourceConfig
from module_system.state import StateStore
from tests import egress_helpers
from tests.egress_helpers import OriginServer, StubDns
from tests.web_site import Page, Request, Site, article, html

dns, connections = egress_helpers.dns, egress_helpers.connections
other_origin = egress_helpers.other_origin
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
HAVE_BROWSER = bool(importlib.util.find_spec("playwright") and CHROMIUM)
needs_browser = pytest.mark.skipif(not HAVE_BROWSER, reason="needs playwright and chromium")


class RedirectingRobotsSite(Site):
    """A site whose robots.txt answers with a redirect to ``robots_location``."""

    robots_location = ""

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if path == "/robots.txt" and self.robots_location:
            self.requests.append(Request(path, headers, time.monotonic()))
            return 301, {"Location": self.robots_location}, b""
        return super().answer(path, headers)


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as running:
        yield running


def crawl(site: Site, tmp_path: Path, **source: Any) -> tuple[dict[str, RemoteItem], Retrier]:
    """Crawl ``site`` with ``source`` settings; the items by URI and the job's retrier."""
    config = WebSourceConfig.model_validate({"start_urls": [site.url + "/"], **source})
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    retrier = Retrier(RetryConfig(attempts=3, backoff=0.01, max_backoff=0.05))
    context = SourceContext(
        "svc", "job", "run", RetryConfig(), state.cursors_for("svc"), logging.getLogger("test"),
        retrier=retrier,
    )  # fmt: skip
    try:
        with WebSource.from_config(config, context) as web:
            return {item.uri: item for item in web.list_items()}, retrier
    finally:
        state.close()


def skip_reason(items: dict[str, RemoteItem], uri: str) -> str:
    return str(items[uri].extra["skip_reason"])


def test_robots_txt_redirect_to_another_origin_is_not_followed(
    tmp_path: Path, other_origin: OriginServer
) -> None:
    with RedirectingRobotsSite() as site:
        site.robots_location = other_origin.url + "/robots.txt"
        items, _ = crawl(site, tmp_path, max_pages=3)
        assert len([p for p in site.paths() if p != "/robots.txt"]) == 3  # crawl went on
    assert other_origin.requests == []
    reason = skip_reason(items, other_origin.url + "/robots.txt")
    assert f"{other_origin.url} is not an origin" in reason and "allowed_origins" in reason


def test_sitemaps_on_another_origin_need_allowed_origins(
    site: Site, tmp_path: Path, other_origin: OriginServer
) -> None:
    sitemap = other_origin.url + "/sitemap.xml"
    site.robots += f"Sitemap: {sitemap}\n"
    other_origin.routes["/sitemap.xml"] = (
        200, {"Content-Type": "application/xml"},
        f"<urlset><url><loc>{site.url}/orphan.html</loc></url></urlset>".encode(),
    )  # fmt: skip
    items, _ = crawl(site, tmp_path, max_depth=1, sitemaps=True)
    assert other_origin.requests == [] and "/orphan.html" not in site.paths()
    assert "allowed_origins" in skip_reason(items, sitemap)

    items, _ = crawl(site, tmp_path, max_depth=1, sitemaps=True, allowed_origins=[other_origin.url])
    assert other_origin.paths() == ["/sitemap.xml"] and "/orphan.html" in site.paths()
    assert sitemap not in items


def test_links_in_a_sitemap_to_another_origin_are_listed_as_ignored(
    site: Site, tmp_path: Path, other_origin: OriginServer
) -> None:
    elsewhere = other_origin.url + "/page.html"
    locs = f"<url><loc>{elsewhere}</loc></url><url><loc>{site.url}/orphan.html</loc></url>"
    site.pages["/sitemap.xml"].body = f"<urlset>{locs}</urlset>".encode()
    items, _ = crawl(site, tmp_path, max_depth=1, sitemaps=True)
    assert "allowed_origins" in skip_reason(items, elsewhere)
    assert other_origin.requests == [] and "/orphan.html" in site.paths()


def test_hosts_in_allowed_domains_not_named_by_the_config_get_public_addresses_only(
    site: Site, tmp_path: Path, dns: StubDns, connections: list[Any]
) -> None:
    dns.table["sub.site.test"] = ["127.0.0.1"]  # the same server, under another name
    other = f"http://sub.site.test:{site.port}"
    site.pages["/"].body += f'<a href="{other}/news/a3.html">sub</a>'.encode()
    domains = ["127.0.0.1", "site.test"]
    items, _ = crawl(site, tmp_path, max_depth=1, allowed_domains=domains)
    reason = skip_reason(items, other + "/news/a3.html")
    assert "private or loopback" in reason and "sub.site.test" in reason
    assert not any(r.headers.get("host", "").startswith("sub.") for r in site.requests)

    items, _ = crawl(site, tmp_path, max_depth=1, allowed_domains=domains, allowed_origins=[other])
    assert items[other + "/news/a3.html"].extra["body"]  # named: fetched, pinned to 127.0.0.1
    assert f"sub.site.test:{site.port}" in {r.headers.get("host") for r in site.requests}
    assert {address for address, _ in connections} == {"127.0.0.1"}


def test_one_decision_of_what_is_retried_counted_by_reason(site: Site, tmp_path: Path) -> None:
    site.pages["/slow.html"] = Page(article("Slow"), fail_first=1, status_while_failing=408)
    site.pages["/"].body += b'<a href="/slow.html">slow</a>'
    items, retrier = crawl(site, tmp_path, max_depth=1)
    assert site.paths().count("/slow.html") == 2  # 408 Request Timeout is retried too
    assert items[site.url + "/slow.html"].extra["body"]
    assert retrier.retries == {"http_408": 1, "http_429": 1, "http_500": 1}


def test_close_releases_the_fetcher(site: Site) -> None:
    settings = CrawlSettings((site.url + "/",), Scope.build(["127.0.0.1"]))
    fetcher = Fetcher("ua", 5, 4096, 2, settings.egress_policy())
    crawler = Crawler(settings, fetcher, Retrier(RetryConfig()))
    crawler.close()
    assert fetcher.client.is_closed and crawler._stopping.is_set()


@needs_browser
def test_render_js_blocks_requests_the_policy_refuses(
    site: Site, tmp_path: Path, other_origin: OriginServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with OriginServer("127.0.0.3") as denied:
        egress_helpers.deny(monkeypatch, "127.0.0.3/32")  # allowed origin, refused address
        for server in (other_origin, denied):
            server.routes["/app.js"] = (200, {"Content-Type": "text/javascript"}, b"1;")
        socket = other_origin.url.replace("http", "ws") + "/socket"
        scripts = (f'<script src="{other_origin.url}/app.js"></script>'
                   f'<script src="{denied.url}/app.js"></script>'
                   f'<script>new WebSocket("{socket}")</script>')  # fmt: skip
        site.pages["/js.html"] = Page(html("<article><h1>Scripts</h1></article>", head=scripts))
        site.pages["/"].body += b'<a href="/js.html">js</a>'
        items, _ = crawl(
            site, tmp_path, render_js=True, max_depth=1, include=["js.html"],
            allowed_origins=[denied.url],
        )  # fmt: skip
        assert other_origin.requests == [] and denied.requests == []
    assert b"<h1>Scripts</h1>" in items[site.url + "/js.html"].extra["body"]


@needs_browser
def test_a_dead_browser_fails_the_page_instead_of_hanging(site: Site) -> None:
    policy = EgressPolicy.build([site.url], [site.url])
    renderer = JsRenderer("ua", 5, CHROMIUM, policy)
    try:
        assert "home" in renderer.render(site.url + "/")
        browsers = [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name()]
        assert browsers
        for process in browsers:  # started by this test's renderer
            with contextlib.suppress(psutil.NoSuchProcess):  # gone with its parent
                process.kill()
        psutil.wait_procs(browsers, timeout=10)
        with ThreadPoolExecutor(1) as pool:
            attempt = pool.submit(renderer.render, site.url + "/page2.html")
            with pytest.raises(ModuleSystemError):
                attempt.result(timeout=120)  # a hang fails here instead of blocking the crawl
    finally:
        renderer.close()
