"""Canonical URLs and the web source's landing keys: two different canonical URLs never
share a key (pages, other responses and records alike), and no key climbs out of its
folder. Example-based where the issue named a collision, property-based for the rest."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from module_system.sources.crawl.urls import (
    Scope,
    asset_key,
    normalize_url,
    page_key,
    records_key,
)


@pytest.mark.parametrize(
    "urls",
    [
        ["https://h/x", "https://h/x.html", "https://h/x.htm"],
        ["https://h/d/", "https://h/d/index.html", "https://h/d/index"],
        ["http://h/a.html", "https://h/a.html"],
        ["http://h:8080/a.html", "https://h:8080/a.html"],
        ["https://h/list?page=2", "https://h/list.html?page=2", "https://h/?page=2"],
        ["https://h/~u.html", "https://h/%257E.html"],
    ],
)
def test_urls_that_shared_a_key_get_their_own(urls: list[str]) -> None:
    keys = [page_key(normalize_url(url) or "") for url in urls]
    assert len(set(keys)) == len(urls), keys


def test_common_keys_stay_as_they_were() -> None:
    assert page_key("https://example.com/a/b.html") == "example.com/a/b.html"
    assert page_key("https://example.com/") == "example.com/index.html"
    assert page_key("https://example.com/news/") == "example.com/news/index.html"
    assert page_key("http://127.0.0.1:8000/a.htm") == "127.0.0.1_8000/a.htm"
    assert asset_key("https://example.com/logo.png") == "example.com/logo.png"
    assert records_key("https://h/a.html") == "h/a.html.records.jsonl"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM.:80/a", "http://example.com/a"),  # case, trailing dot, port
        ("https://h/%7euser/%7E", "https://h/~user/~"),  # unreserved characters decoded
        ("https://h/caf%c3%a9", "https://h/caf%C3%A9"),  # percent-encoding upper-cased
        ("https://h/caf\u00e9", "https://h/caf%C3%A9"),
        ("https://b\u00fccher.de/", "https://xn--bcher-kva.de/"),  # IDNA
        ("https://h/p?b=2&a=1&a=0", "https://h/p?a=0&a=1&b=2"),  # arguments sorted
        ("https://user:secret@h/", "https://h/"),  # credentials in a link are dropped
        ("https://h/a/%2E%2E/b", "https://h/b"),  # encoded dot segments resolved
        ("https://h/x?#frag", "https://h/x"),
    ],
)
def test_canonical_form(url: str, expected: str) -> None:
    assert normalize_url(url) == expected


def test_allowed_domains_are_compared_in_canonical_form() -> None:
    scope = Scope.build(["B\u00fccher.DE."])
    assert scope.allowed(normalize_url("https://www.b\u00fccher.de/") or "")


_SEGMENTS = st.sampled_from(
    ["", ".", "..", "x", "x.html", "x.htm", "X.HTML", "index.html", "index", "~", "%7E",
     "%7e", "%257E", "a b", "\u00e9", "%C3%A9", "%2F", "%2E%2E", "x~.html", "index.html~",
     "y.records.jsonl", "x.html.records.jsonl", "%", "x%7"]
)  # fmt: skip
_HOSTS = st.sampled_from(
    ["example.com", "EXAMPLE.com.", "b\u00fccher.de", "xn--bcher-kva.de", "a_b.com", "a",
     "127.0.0.1", "[::1]", "[0:0::1]", "h%41"]
)  # fmt: skip
_QUERIES = st.sampled_from(["", "?", "?a=1", "?a=1&b=2", "?b=2&a=1", "?a", "?~=%7e", "?q=a b"])
_URLS = st.builds(
    lambda scheme, host, port, segments, query, fragment: (
        f"{scheme}://{host}{port}/{'/'.join(segments)}{query}{fragment}"
    ),
    st.sampled_from(["http", "https", "HTTPS"]),
    _HOSTS,
    st.sampled_from(["", ":80", ":443", ":8080"]),
    st.lists(_SEGMENTS, max_size=4),
    _QUERIES,
    st.sampled_from(["", "#top"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_URLS, min_size=2, max_size=12))
def test_keys_are_one_to_one_over_canonical_urls(urls: list[str]) -> None:
    owner: dict[str, str] = {}
    for canonical in {normalize_url(url) for url in urls} - {None}:
        assert canonical is not None
        for key in {page_key(canonical), asset_key(canonical), records_key(canonical)}:
            assert owner.setdefault(key, canonical) == canonical, key


@settings(max_examples=300, deadline=None)
@given(_URLS)
def test_canonical_form_is_stable_and_keys_never_escape(url: str) -> None:
    canonical = normalize_url(url)
    assert canonical is not None
    assert normalize_url(canonical) == canonical
    assert "%7E" not in canonical.upper()  # so "%7E" in a key can only mean a literal "~"
    for key in (page_key(canonical), asset_key(canonical)):
        assert not key.startswith("/")
        assert not {".", ".."} & set(key.split("/")), key
    assert page_key(canonical).lower().endswith((".html", ".htm"))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["https://h/a/b.html", "http://h:81/"]))
def test_any_href_resolves_to_a_canonical_url_or_none(href: str, base: str) -> None:
    canonical = normalize_url(href, base)
    if canonical is not None:
        assert canonical.startswith(("http://", "https://"))
        assert normalize_url(canonical) == canonical
        assert not {".", ".."} & set(page_key(canonical).split("/"))
