"""The crawl's memory stays bounded: the frontier never holds more than ``max_pages`` URLs,
however many links the pages have, and the crawl history is stored compactly (each URL
once, compressed); a history in the earlier format costs one full crawl, not a failure."""

from __future__ import annotations

import base64
import logging
import zlib
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from module_system.config.models import RetryConfig
from module_system.sources.base import RemoteItem, SourceContext
from module_system.sources.crawl.history import (
    CURSOR_NAME,
    FORMAT_PREFIX,
    CrawlHistory,
    PageMemory,
    PageTable,
)
from module_system.sources.web import WebSource, WebSourceConfig
from module_system.state import StateStore
from tests.web_site import Page, Site, html


def _inflate(raw: str) -> bytes:
    return zlib.decompress(base64.b64decode(raw.removeprefix(FORMAT_PREFIX)))


def _deflate(document: bytes) -> str:
    return FORMAT_PREFIX + base64.b64encode(zlib.compress(document)).decode()


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as running:
        yield running


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.close()


def crawl(site: Site, state: StateStore, start: str = "/", **source: Any) -> list[RemoteItem]:
    """One crawl through the web source, its history committed as a job would."""
    config = WebSourceConfig.model_validate({"start_urls": [site.url + start], **source})
    context = SourceContext(
        "svc", "job", "run", RetryConfig(attempts=2, backoff=0.01, max_backoff=0.05),
        state.cursors_for("svc"), logging.getLogger("test"),
    )  # fmt: skip
    with WebSource.from_config(config, context) as web:
        items = list(web.list_items())
        web.commit()
        frontier = web.crawler.frontier
        assert frontier.dispatched + frontier.queued <= config.max_pages
        assert len(frontier._seen) <= config.max_pages * (config.max_redirects + 2)
    return items


def test_a_page_with_thousands_of_links_queues_no_more_than_max_pages(
    site: Site, state: StateStore
) -> None:
    links = "".join(f'<a href="/many/{n}.html">{n}</a>' for n in range(3_000))
    site.pages["/wide.html"] = Page(html(links))
    items = crawl(site, state, "/wide.html", max_pages=10, concurrency=2)
    assert len({item.uri for item in items}) == 10  # the checks on the frontier are in crawl()


def _history(pages: int, shared_links: int) -> CrawlHistory:
    history = CrawlHistory()
    nav = [f"https://example.com/section/{n}/" for n in range(shared_links)]
    for n in range(pages):
        own = [f"https://example.com/story/{n}-{k}.html" for k in range(3)]
        memory = PageMemory(
            key=f"example.com/story/{n}.html", version=f"sha256:{n:064x}",
            etag=f'"{n:x}"', links=nav + own,
        )  # fmt: skip
        history.remember(f"https://example.com/story/{n}.html", memory)
    return history


def test_history_is_stored_compactly_and_reads_back(state: StateStore) -> None:
    history = _history(pages=1_000, shared_links=100)
    cursors = state.cursors_for("svc")
    history.save(cursors)
    stored = cursors.get(CURSOR_NAME) or ""
    # what the earlier format stored for the same pages: every link list spelled out
    earlier = orjson.dumps(
        {url: asdict(history._current.get(url)) for url in _page_urls(1_000)}  # type: ignore[arg-type]
    )
    assert stored.startswith(FORMAT_PREFIX)
    assert len(stored) * 50 < len(earlier), (len(stored), len(earlier))
    loaded = CrawlHistory.load(cursors)
    assert len(loaded.previous) == 1_000
    memory = loaded.previous.get("https://example.com/story/7.html")
    assert memory == history._current.get("https://example.com/story/7.html")
    assert memory is not None and len(memory.links) == 103
    assert memory.conditional_headers() == {"If-None-Match": '"7"'}


def _page_urls(count: int) -> list[str]:
    return [f"https://example.com/story/{n}.html" for n in range(count)]


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        FORMAT_PREFIX + "!!!",
        FORMAT_PREFIX + "bm90IHpsaWI=",  # base64 of "not zlib"
        _deflate(b"[1, 2]"),
        _deflate(b'{"urls": [1], "pages": []}'),
        _deflate(b'{"urls": ["https://h/"], "pages": [[0, "k", "v", null, null, null, [-1]]]}'),
        '{"https://h/": {"key": "h/index.html", "version": "sha256:0", "links": []}}',
    ],
)
def test_an_unreadable_or_earlier_history_means_a_full_crawl(raw: str, state: StateStore) -> None:
    cursors = state.cursors_for("svc")
    cursors.set(CURSOR_NAME, raw)
    assert len(CrawlHistory.load(cursors).previous) == 0


def test_a_table_with_numbers_out_of_range_is_refused() -> None:
    table = PageTable()
    table.put("https://h/a.html", PageMemory("h/a.html", "v", links=["https://h/b.html"]))
    document = orjson.loads(_inflate(table.dumps()))
    document["pages"][0][-1] = [99]
    with pytest.raises(ValueError, match="out of range"):
        PageTable.loads(_deflate(orjson.dumps(document)))


def test_upgrade_from_the_earlier_history_format_is_one_full_crawl(
    site: Site, state: StateStore
) -> None:
    earlier: dict[str, Any] = {
        site.url + "/": {"key": "x/index.html", "version": "sha256:0", "etag": '"e"',
                         "last_modified": None, "links": [], "records_version": None},
    }  # fmt: skip
    state.cursors_for("svc").set(CURSOR_NAME, orjson.dumps(earlier).decode())
    crawl(site, state, max_pages=4, concurrency=1)
    assert not any("if-none-match" in r.headers for r in site.requests)
    assert (state.cursors_for("svc").get(CURSOR_NAME) or "").startswith(FORMAT_PREFIX)
    site.requests.clear()
    items = crawl(site, state, max_pages=4, concurrency=1)
    conditional = [r.path for r in site.requests if "if-none-match" in r.headers]
    assert "/" in conditional  # the history written by the full crawl is used
    home = next(item for item in items if item.uri == site.url + "/")
    assert home.key == f"127.0.0.1_{site.port}/index.html" and home.extra.get("body") is None
