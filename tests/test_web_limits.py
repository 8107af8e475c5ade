"""The crawl's limits and politeness, checked on the crawl itself (no landing): page and
depth budgets, include/exclude, land_only, robots.txt and Crawl-delay, redirects out of
scope and in loops, sitemaps, the user agent."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from module_system.config.models import RetryConfig
from module_system.sources.base import RemoteItem, SourceContext
from module_system.sources.web import WebSource, WebSourceConfig
from module_system.state import StateStore
from tests.web_site import Site


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as running:
        yield running


def crawl(site: Site, tmp_path: Path, **source: Any) -> list[RemoteItem]:
    config = WebSourceConfig.model_validate({"start_urls": [site.url + "/"], **source})
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    context = SourceContext(
        "svc", "job", "run", RetryConfig(attempts=3, backoff=0.01, max_backoff=0.05),
        state.cursors_for("svc"), logging.getLogger("test"),
    )  # fmt: skip
    try:
        with WebSource.from_config(config, context) as web:
            return list(web.list_items())
    finally:
        state.close()


def pages(site: Site) -> list[str]:
    return [p for p in site.paths() if p != "/robots.txt"]


def test_max_pages_caps_requests(site: Site, tmp_path: Path) -> None:
    items = crawl(site, tmp_path, max_pages=3, concurrency=4)
    assert len(pages(site)) == 3
    assert len({item.uri for item in items}) == 3


@pytest.mark.parametrize(("depth", "absent"), [(0, "/news/"), (1, "/news/a3.html")])
def test_max_depth(site: Site, tmp_path: Path, depth: int, absent: str) -> None:
    crawl(site, tmp_path, max_depth=depth)
    assert "/" in pages(site) and absent not in pages(site)
    if depth == 0:
        assert pages(site) == ["/"]


def test_include_exclude_and_land_only(site: Site, tmp_path: Path) -> None:
    items = crawl(
        site, tmp_path, include=["/news/"], exclude=["a2"], land_only=[r"/news/a\d\.html$"]
    )
    fetched = pages(site)
    assert all(p == "/" or p.startswith("/news/") for p in fetched)  # the start URL is exempt
    assert "/news/a2.html" not in fetched and "/news/a1.html" in fetched
    landable = {i.key.rsplit("/", 2)[-2] + "/" + i.key.rsplit("/", 1)[-1]
                for i in items if not i.extra.get("skip_reason")}  # fmt: skip
    assert landable == {"news/a1.html", "news/a3.html"}


def test_robots_txt_disallow_and_crawl_delay(tmp_path: Path) -> None:
    # The spacing itself is checked on the frontier's clock (test_web_units), not here.
    with Site(robots_delay=0.05) as slow:
        crawl(slow, tmp_path, max_pages=5, concurrency=4)
        assert slow.paths()[0] == "/robots.txt"
    assert "/private/secret.html" not in pages(slow)
    assert len(pages(slow)) == 5


def test_robots_txt_can_be_ignored(site: Site, tmp_path: Path) -> None:
    crawl(site, tmp_path, respect_robots_txt=False)
    assert "/private/secret.html" in site.paths() and "/robots.txt" not in site.paths()


def test_redirects_leaving_scope_or_looping_are_listed_not_followed(
    site: Site, tmp_path: Path
) -> None:
    items = {item.uri: item for item in crawl(site, tmp_path)}
    away = items[site.url + "/away"].extra["skip_reason"]
    assert "outside allowed_domains" in away and "/external.html" not in site.paths()
    assert "crawled already" in items[site.url + "/loop"].extra["skip_reason"]


def test_sitemaps_seed_the_crawl(site: Site, tmp_path: Path) -> None:
    crawl(site, tmp_path, max_depth=0)
    assert "/orphan.html" not in site.paths()
    crawl(site, tmp_path, max_depth=1, sitemaps=True)
    assert "/sitemap.xml" in site.paths() and "/orphan.html" in site.paths()


def test_user_agent_is_sent(site: Site, tmp_path: Path) -> None:
    crawl(site, tmp_path, max_pages=2, user_agent="newsbot/2.0 (+mailto:ops@example.com)")
    assert {r.headers["user-agent"] for r in site.requests} == {
        "newsbot/2.0 (+mailto:ops@example.com)"
    }


def test_config_rejects_non_http_start_urls_and_bad_regexes() -> None:
    with pytest.raises(ValueError, match="not http"):
        WebSourceConfig.model_validate({"start_urls": ["file:///etc/"]})
    with pytest.raises(ValueError, match="invalid regex"):
        WebSourceConfig.model_validate({"start_urls": ["http://h/"], "include": ["("]})
