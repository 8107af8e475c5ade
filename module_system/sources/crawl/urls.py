"""URL rules of the crawl: normalisation (so each page is fetched once), scope (schemes,
allowed domains, include/exclude patterns) and the landing key of a page."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

FOLLOWED_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}
HTML_SUFFIXES = (".html", ".htm")
_STRIPPED = re.compile(r"[\t\n\r]")  # browsers drop these anywhere in a URL
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


def normalize_url(url: str, base: str | None = None) -> str | None:
    """The absolute, fragment-free canonical form of ``url`` (resolved against ``base``),
    or None for anything that is not a well-formed http(s) URL (``mailto:``,
    ``javascript:``, ``data:``, ``file:`` ...).

    >>> normalize_url("../b/./c.html?x=1#top", "HTTP://Example.COM:80/a/d/")
    'http://example.com/a/b/c.html?x=1'
    """
    url = _STRIPPED.sub("", url).strip()
    try:
        parts = urlsplit(urljoin(base, url) if base else url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in FOLLOWED_SCHEMES or not host:
        return None
    host = f"[{host}]" if ":" in host else host
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = quote(_remove_dot_segments(parts.path or "/"), safe=_PATH_SAFE)
    query = quote(parts.query, safe=_QUERY_SAFE)
    return urlunsplit((scheme, netloc, path, query, ""))


def _remove_dot_segments(path: str) -> str:
    output: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    if path.endswith(("/.", "/..")):
        output.append("")
    return "/" + "/".join(output)


def origin(url: str) -> str:
    """``scheme://host[:port]``: the unit robots.txt and politeness apply to."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def page_key(url: str) -> str:
    """The landing key of an HTML page: ``{host}/{path}``, always ending in ``.html`` or
    ``.htm`` so the HTML validator recognises it; ``/`` becomes ``index.html`` and a
    query string a short stable hash (``list~bc7c7eb0ad.html`` for ``list?page=2``).

    >>> page_key("http://example.com:8080/news/?page=2")
    'example.com_8080/news/index~bc7c7eb0ad.html'
    """
    parts = urlsplit(url)
    directory, _, name = parts.path.rpartition("/")
    stem, suffix = name or "index", ".html"
    for known in HTML_SUFFIXES:
        if stem.lower().endswith(known) and len(stem) > len(known):
            stem, suffix = stem[: -len(known)], stem[-len(known) :]
    if parts.query:
        stem += "~" + _short_hash(parts.query)
    return f"{_host_folder(parts.netloc)}{directory}/{stem}{suffix}"


def asset_key(url: str) -> str:
    """The manifest key of a response that is not landed (not HTML, too large, gone)."""
    parts = urlsplit(url)
    tail = parts.path + ("~" + _short_hash(parts.query) if parts.query else "")
    return _host_folder(parts.netloc) + tail


def _host_folder(netloc: str) -> str:
    return netloc.replace(":", "_").replace("[", "").replace("]", "")


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Scope:
    """Which URLs the crawl may fetch (``allowed``) and which it follows and lands
    (``wanted``): inside ``domains`` (a domain admits its subdomains), matching one
    ``include`` pattern when any are given and no ``exclude`` pattern."""

    domains: tuple[str, ...]
    include: tuple[re.Pattern[str], ...] = ()
    exclude: tuple[re.Pattern[str], ...] = ()
    skip_extensions: tuple[str, ...] = ()  # with the dot, lower case: (".png", ".pdf")

    @classmethod
    def build(
        cls,
        domains: Iterable[str],
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        skip_extensions: Iterable[str] = (),
    ) -> Scope:
        return cls(
            tuple(d.lower().lstrip(".") for d in domains),
            tuple(re.compile(p) for p in include),
            tuple(re.compile(p) for p in exclude),
            tuple("." + e.lower().lstrip(".") for e in skip_extensions),
        )

    def allowed(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        return any(host == d or host.endswith("." + d) for d in self.domains)

    def wanted(self, url: str) -> bool:
        if not self.allowed(url) or urlsplit(url).path.lower().endswith(self.skip_extensions):
            return False
        if self.include and not any(p.search(url) for p in self.include):
            return False
        return not any(p.search(url) for p in self.exclude)
