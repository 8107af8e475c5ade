"""A page's links, resolved in bulk (:func:`normalize_links`, cached by folder) must be
exactly what resolving each link alone (:func:`normalize_url`) gives, whatever the base."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st
from w3lib.url import canonicalize_url

from module_system.sources.crawl import urls
from module_system.sources.crawl.page import parse_page
from module_system.sources.crawl.urls import normalize_links, normalize_url

BASES = [
    "http://h.test/a/b/page.html",
    "http://h.test/a/b/",
    "http://h.test",
    "https://h.test:8443/a;p/b;q/c.html?x=1",
    "http://h.test/a?next=/x/y/z.html",  # a "/" in the query is not a folder
    "http://h.test/a/page.html#top",
    "http://user@h.test:80/a/../b/./c.html",
    "http://h.test/a?",
    "http://h.test//x//y.html",
]
TRICKY_HREFS = [
    "", "#", "#top", "?", "?q=1", "?q=1#f", ".", "..", "./", "../", "../../../x.html",
    "c.html", "c.html#f", "./c.html?b=2&a=1", "sub/", "sub/../d.html", "/", "/root.html",
    "//other.test/p", "//other.test", "http:rel.html", "https:rel.html", "HTTP://H.TEST/Up",
    "mailto:x@h.test", "javascript:void(0)", "data:,x", " \t\nc.html\r ", "c d.html",
    "caf\u00e9.html", "%7Euser/", "http://[bad", "//[::1]:8080/v6", ";p", "a;b/c", ";", ";?q",
    "http:", "http:?q", "//", "///x.html", "http://", "http:///y", "HTTP:;", "ftp:x",
    "\x01?q", "\x00", "a:b", "\\x.html",
]  # fmt: skip


def _uncached(href: str, base: str) -> str | None:
    """normalize_url as it was before its results were cached, fragment and all."""
    href = re.sub(r"[\t\n\r]", "", href).strip()
    try:
        absolute = urljoin(base, href)
        if urlsplit(absolute).scheme.lower() not in ("http", "https"):
            return None
        canonical = urls._cleaned(canonicalize_url(urls._cleaned(absolute)))
    except (ValueError, UnicodeError):
        return None
    return canonical if urlsplit(canonical).hostname else None


def _one_by_one(hrefs: list[str], base: str) -> list[str]:
    links = (_uncached(href, base) for href in hrefs)
    return list(dict.fromkeys(link for link in links if link))


def test_tricky_links_resolve_as_one_by_one() -> None:
    for base in BASES:
        assert normalize_links(TRICKY_HREFS, base) == _one_by_one(TRICKY_HREFS, base), base
        for href in TRICKY_HREFS:
            assert normalize_url(href, base) == _uncached(href, base), (href, base)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(st.sampled_from(TRICKY_HREFS), st.text(max_size=20)), max_size=12),
    st.sampled_from(BASES),
)
def test_any_links_resolve_as_one_by_one(hrefs: list[str], base: str) -> None:
    assert normalize_links(hrefs, base) == _one_by_one(hrefs, base)
    for href in hrefs:
        assert normalize_url(href, base) == _uncached(href, base)


def test_pages_of_one_folder_share_resolved_links_but_not_their_own() -> None:
    html = '<a href="">me</a><a href="?p=2">next</a><a href="../up.html#x">up</a><a href="s/">s</a>'
    first = parse_page(html, "http://h.test/d/one.html").links
    second = parse_page(html, "http://h.test/d/two.html").links
    assert first == ["http://h.test/d/one.html", "http://h.test/d/one.html?p=2",
                     "http://h.test/up.html", "http://h.test/d/s/"]  # fmt: skip
    assert second == ["http://h.test/d/two.html", "http://h.test/d/two.html?p=2",
                      "http://h.test/up.html", "http://h.test/d/s/"]  # fmt: skip


def test_first_base_and_canonical_win_and_meta_robots_count_anywhere() -> None:
    html = (
        '<head><base href><base href="/other/"><link rel="alternate" href="/alt.html">'
        '<link rel="Canonical next" href="c.html"><link rel=canonical href="/late.html">'
        '<meta name="description" content="noindex"></head>'
        '<body><a href="a.html">a</a><meta name=" ROBOTS " content="NoIndex"></body>'
    )
    page = parse_page(html, "http://h.test/d/p.html")
    assert page.canonical == "http://h.test/d/c.html"  # an empty first <base> is no base
    assert page.links == ["http://h.test/d/c.html", "http://h.test/d/a.html"]
    assert page.noindex and not page.nofollow
    page = parse_page('<base href="/b/"><base href="/x/"><a href="a.html">', "http://h.test/")
    assert page.links == ["http://h.test/b/a.html"]
    assert page.canonical is None and not page.noindex


def test_configured_urls_stay_out_of_the_link_caches() -> None:
    before = urls._canonical_cached.cache_info().currsize, urls._link_resolved.cache_info()
    assert normalize_url("http://user:secret@h.test/start.html") == "http://h.test/start.html"
    assert normalize_url("next.html", "http://user:secret@h.test/a/") == "http://h.test/a/next.html"
    after = urls._canonical_cached.cache_info().currsize, urls._link_resolved.cache_info()
    assert after == before
