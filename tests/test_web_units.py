"""The web source's building blocks, one at a time: URLs, encodings, Retry-After, robots
rules, extraction, the frontier, and the HTML validator."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from protego import Protego
from selectolax.lexbor import LexborHTMLParser

from module_system.errors import ConfigError
from module_system.sources.crawl.extract import Extractor
from module_system.sources.crawl.frontier import Frontier
from module_system.sources.crawl.page import parse_page
from module_system.sources.crawl.robots import RobotsRules, agent_token
from module_system.sources.crawl.urls import Scope, asset_key, normalize_url, page_key
from module_system.sources.http.client import retry_after_seconds
from module_system.text_encoding import decode_html, detect_encoding
from module_system.validation.html import HtmlOptions, HtmlValidator


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("b.html#frag", "http://example.com/a/b.html"),
        ("../x/./y.html", "http://example.com/x/y.html"),
        ("//Example.COM:80/", "http://example.com/"),
        ("https://example.com:443/p?q=1 2", "https://example.com/p?q=1+2"),  # w3lib: form spaces
        ("/caf\u00e9 menu.html", "http://example.com/caf%C3%A9%20menu.html"),
        ("/a%20b.html", "http://example.com/a%20b.html"),
        (" \n/spaced.html\t", "http://example.com/spaced.html"),
        ("mailto:desk@example.com", None),
        ("javascript:void(0)", None),
        ("data:text/html,<p>x</p>", None),
        ("file:///etc/passwd", None),
        ("http://[bad", None),
    ],
)
def test_normalize_url(href: str, expected: str | None) -> None:
    assert normalize_url(href, "http://example.com/a/index.html") == expected


def test_page_keys_are_stable_and_end_in_html() -> None:
    assert page_key("https://example.com/") == "example.com/index.html"
    assert page_key("https://example.com/news/") == "example.com/news/index.html"
    assert page_key("https://example.com/news/story") == "example.com/news/story~.html"
    assert page_key("https://example.com/a.htm") == "example.com/a.htm"
    assert page_key("http://example.com/a.htm") == "example.com_80/a.htm"
    listed = page_key("http://example.com:8080/list.html?page=2")
    assert listed.startswith("example.com_8080/list.html~") and listed.endswith(".html")
    assert listed == page_key("http://example.com:8080/list.html?page=2")
    assert listed != page_key("http://example.com:8080/list.html?page=3")
    assert asset_key("https://example.com/logo.png") == "example.com/logo.png"


def test_scope_domains_patterns_and_extensions() -> None:
    scope = Scope.build(["example.com"], [r"/news/"], [r"\?print=1"], ["pdf"])
    assert scope.wanted("https://www.example.com/news/a.html")
    assert not scope.wanted("https://example.com/sport/a.html")  # not included
    assert not scope.wanted("https://example.com/news/a.html?print=1")  # excluded
    assert not scope.wanted("https://example.com/news/a.PDF")  # skipped extension
    assert not scope.allowed("https://notexample.com/news/")
    assert not scope.allowed("https://example.com.evil.org/news/")


def test_encoding_order_bom_header_meta_then_detection() -> None:
    latin = "<p>caf\u00e9 cr\u00e8me</p>".encode("latin-1")
    assert detect_encoding(latin, "ISO-8859-1") == "cp1252"  # the HTML standard's mapping
    assert detect_encoding(b'<meta charset="koi8-r">' + latin) == "koi8-r"
    assert detect_encoding(b"\xef\xbb\xbf<p>x</p>", "latin-1") == "utf-8"  # BOM wins
    assert detect_encoding("<p>\u00fcber</p>".encode()) == "utf-8"
    text, codec = decode_html(latin, "latin-1")
    assert text == "<p>caf\u00e9 cr\u00e8me</p>" and codec == "cp1252"
    assert decode_html(b"\xff\xfe\xfa", "no-such-codec")[0]  # never raises


def test_retry_after_seconds_and_dates() -> None:
    now = datetime.fromtimestamp(1445412470.0, UTC)  # the crawl uses the HTTP layer's parser
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 10.0
    assert retry_after_seconds("garbage") is None


def test_robots_rules_and_agent_token() -> None:
    parser = Protego.parse("User-agent: *\nDisallow: /private/\nCrawl-delay: 1.5\n")
    rules = RobotsRules(agent_token("module-system/0.1 (+https://x)"), parser)
    assert rules.agent == "module-system"
    assert not rules.allowed("http://h/private/a.html") and rules.allowed("http://h/a.html")
    assert rules.crawl_delay() == 1.5
    assert RobotsRules("x").allowed("http://h/private/") and RobotsRules("x").crawl_delay() == 0


def test_page_links_base_canonical_and_meta_robots() -> None:
    html = (
        '<html><head><base href="/docs/"><link rel="canonical" href="/c.html#top">'
        '<link rel="next" href="p2.html"><meta name="Robots" content="NOINDEX"></head>'
        '<body><a href="a.html#x">a</a><a href="a.html">again</a><a href="mailto:x@y">m</a>'
        '<area href="/map.html"></body></html>'
    )
    page = parse_page(html, "http://h/x/y.html")
    assert page.links == ["http://h/docs/p2.html", "http://h/docs/a.html", "http://h/map.html"]
    assert page.canonical == "http://h/c.html"
    assert page.noindex and not page.nofollow
    assert parse_page("<a href=b>b</a>", "http://h/", robots_header="none").links == []


def test_extractor_fields() -> None:
    extractor = Extractor(
        "article",
        {"title": "h1::text", "when": "time::attr(datetime)", "id": "::attr(id)", "x": ".no"},
    )
    tree = LexborHTMLParser(
        '<article id="a1"><h1> Big\n  news </h1><time datetime="2026-11-28">x</time></article>'
    )
    assert extractor.extract(tree) == [
        {"title": "Big news", "when": "2026-11-28", "id": "a1", "x": None}
    ]
    with pytest.raises(ConfigError, match=r"extract\.fields\.t"):
        Extractor("article", {"t": "h1[[::text"})


def _frontier_with_rules(max_pages: int, robots: str = "") -> Frontier:
    """A frontier whose origin http://h has its robots.txt rules, holding http://h/a."""
    frontier = Frontier(per_host=2, delay=0.0, max_pages=max_pages)
    assert frontier.add("http://h/a", 0)
    task = frontier.next()
    assert task is not None and task.request is None  # robots.txt first
    frontier.robots_loaded("http://h", RobotsRules("bot", Protego.parse(robots)))
    frontier.done(task)
    return frontier


def test_frontier_dedupes_honours_robots_and_budget() -> None:
    frontier = _frontier_with_rules(2, "User-agent: *\nDisallow: /private/\n")
    assert not frontier.add("http://h/a", 1)  # queued already
    assert not frontier.add("http://h/private/b", 1)  # disallowed: costs no budget
    assert frontier.add("http://h/c", 1)
    assert not frontier.add("http://h/d", 1)  # a + c: the budget is spent
    first, second = frontier.next(), frontier.next()
    assert first and second and [first.request, second.request] != [None, None]
    assert {t.request.url for t in (first, second) if t.request} == {"http://h/a", "http://h/c"}
    frontier.done(first)
    frontier.done(second)
    assert frontier.next() is None  # budget spent: the rest is dropped
    assert (frontier.dispatched, frontier.disallowed, frontier.dropped) == (2, 1, 1)


def test_frontier_holds_no_more_than_max_pages() -> None:
    frontier = _frontier_with_rules(5)
    queued = [frontier.add(f"http://h/p{n}", 1) for n in range(10_000)]
    assert sum(queued) == 4  # with /a: five pages known, none beyond
    assert frontier.queued == 5 and len(frontier._seen) == 5
    assert frontier.dropped == 9_996
    claimed = frontier.next()
    assert claimed is not None and claimed.request is not None
    assert frontier.dispatched + frontier.queued == 5
    assert not frontier.add("http://h/later", 2)  # handing a page out frees no room


def test_frontier_gives_back_the_room_of_urls_robots_txt_disallows() -> None:
    frontier = Frontier(per_host=2, delay=0.0, max_pages=2)
    assert frontier.add("http://h/private/a", 0) and frontier.add("http://h/b", 0)
    assert not frontier.add("http://h/c", 0)  # rules unknown yet: both count
    robots = frontier.next()
    assert robots is not None and robots.request is None
    parser = Protego.parse("User-agent: *\nDisallow: /private/\n")
    frontier.robots_loaded("http://h", RobotsRules("bot", parser))
    frontier.done(robots)
    assert (frontier.queued, frontier.disallowed) == (1, 1)
    assert frontier.add("http://h/c", 1)  # the disallowed URL's place is free again
    handed = [frontier.next(), frontier.next()]
    assert {t.request.url for t in handed if t and t.request} == {"http://h/b", "http://h/c"}


def test_html_validator(tmp_path: Path) -> None:
    page = tmp_path / "p.html"
    page.write_bytes(
        b"<html><head><title>t</title><script>var x = 'not counted';</script></head>"
        b"<body><article><h1>Head</h1><p>short text</p></article>"
        b"<div class=ad>ad</div></body></html>"
    )
    options = HtmlOptions(
        required_selectors=["title", "article h1", "article time"],
        forbidden_selectors=[".ad"],
        min_text_length=40,
    )
    verdict = HtmlValidator(options).validate(page, "p.html")
    messages = [issue.message for issue in verdict.issues]
    assert not verdict.valid and verdict.error_count == 3
    assert "required element missing: article time" in messages
    assert any("forbidden element present" in m for m in messages)
    assert any("below min_text_length 40" in m for m in messages)
    empty = tmp_path / "e.html"
    empty.write_bytes(b"  ")
    assert not HtmlValidator(HtmlOptions()).validate(empty, "e.html").valid
    with pytest.raises(ValueError, match="invalid CSS selector"):
        HtmlOptions(required_selectors=["a[[["])


def test_frontier_spaces_requests_by_crawl_delay() -> None:
    frontier = Frontier(per_host=4, delay=0.0, max_pages=10)
    for n in range(3):
        frontier.add(f"http://h/{n}", 0)
    robots = frontier.next()
    assert robots is not None and robots.request is None
    parser = Protego.parse("User-agent: *\nCrawl-delay: 2\n")
    frontier.robots_loaded("http://h", RobotsRules("bot", parser))
    frontier.done(robots)
    first, _ = frontier._pick(100.0)
    too_soon, wait = frontier._pick(100.5)
    later, _ = frontier._pick(102.0)
    assert first is not None and first.request is not None
    assert too_soon is None and wait == 1.5  # one request per Crawl-delay, not 4 at once
    assert later is not None and later.request is not None
