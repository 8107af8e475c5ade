"""URL rules of the crawl: the canonical form of a URL (so each page is fetched once), scope
(schemes, allowed domains, include/exclude patterns) and the landing key of a URL.

Canonical form: ``w3lib.url.canonicalize_url`` (the one Scrapy uses: percent-encoding
upper-cased and only where needed, so ``%7E`` is ``~``; IDNA host names; dot segments
resolved; query arguments sorted by name then value, spaces as ``+``) plus what it leaves
out: only http(s), no fragment, no user info (credentials in a link are never sent or
logged), no default port, no trailing dot in the host name.

Query order: sorted, as Scrapy does when it deduplicates, so ``?b=2&a=1`` and ``?a=1&b=2``
are one page, fetched once, under one key. The sorted form is also what is requested;
``?a`` is sent as ``?a=`` and only ``&`` separates arguments (a ``;`` is percent-encoded).
A site whose answers depend on argument order is rare; one that does is crawled by its
sorted URLs.

Landing keys are one-to-one: two different canonical URLs never share a key (see
:func:`page_key`), and a key never starts with ``/`` nor has a ``.`` or ``..`` segment.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urljoin, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

FOLLOWED_SCHEMES = frozenset({"http", "https"})
DEFAULT_PORTS = {"http": 80, "https": 443}
HTML_SUFFIXES = (".html", ".htm")
INDEX = "index.html"
RECORDS_SUFFIX = ".records.jsonl"  # a page's extracted records land at its key + this
MARK = "~"  # starts every part of a key that is not the URL's own text; escaped in paths
_STRIPPED = re.compile(r"[\t\n\r]")  # browsers drop these anywhere in a URL
_C0_OR_SPACE = "".join(map(chr, range(0x21)))
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_HOST_UNSAFE = re.compile(r"[^a-z0-9.\-]+")
HASH_DIGITS = 16  # of a query's SHA-256: a collision needs ~2**32 queries on one path
# Links remembered (a few MB per cache): a crawl meets the same links on every page.
LINK_CACHE_SIZE = 16_384


def normalize_url(url: str, base: str | None = None) -> str | None:
    """The canonical form of ``url`` (resolved against ``base``), or None for anything that
    is not a well-formed http(s) URL (``mailto:``, ``javascript:``, ``data:``, ``file:`` ...).

    >>> normalize_url("../b/./c.html?y=2&x=1#top", "HTTP://user@Example.COM.:80/a/d/")
    'http://example.com/a/b/c.html?x=1&y=2'
    """
    return _resolved(_STRIPPED.sub("", url).strip(), base)


def normalize_links(hrefs: Iterable[str], base: str) -> list[str]:
    """``normalize_url(href, base)`` of each of a page's links, distinct, in page order,
    without the Nones.

    Fast for a crawl: a relative link resolves the same against any page of one folder,
    so results are cached by (folder, link), and a site's navigation, repeated on every
    page, is canonicalised once per folder rather than once per page."""
    folder = _folder(base)
    # A page repeats links, and more once fragments go (7 to 1 on Sphinx pages): each
    # distinct one is resolved once. The first of each keeps its place in page order.
    bare = (_STRIPPED.sub("", href).strip().partition("#")[0] for href in dict.fromkeys(hrefs))
    links: dict[str, None] = {}
    for href in dict.fromkeys(bare):  # see _resolved for the fragment
        link = _link_resolved(href, base if _needs_page_name(href) else folder)
        if link is not None:
            links[link] = None
    return list(links)


def _needs_page_name(href: str) -> bool:
    """Whether ``href`` may resolve against the page's own name, not only its folder:
    when, past any scheme, it has no path (``""``, ``?q``, ``;``, ``http:``) or starts
    with ``//`` (``//`` alone has no host; ``//host/p`` needs neither). urljoin drops the
    base's last segment in every other case. Leading controls count for nothing, as in
    urlsplit (``"\x01?q"`` is a bare query)."""
    rest = href.lstrip(_C0_OR_SPACE)
    scheme = _SCHEME.match(rest)
    if scheme is not None:
        rest = rest[scheme.end() :]
    return rest[:1] in ("", "?", ";") or rest.startswith("//")  # "//" alone: no host


def _canonical(absolute: str) -> str | None:
    try:
        if urlsplit(absolute).scheme.lower() not in FOLLOWED_SCHEMES:
            return None
        canonical = _cleaned(canonicalize_url(_cleaned(absolute)))
    except (ValueError, UnicodeError):
        return None
    return canonical if urlsplit(canonical).hostname else None


# Only a page's links go through the caches (not configured URLs, which may hold secrets).
_canonical_cached = lru_cache(maxsize=LINK_CACHE_SIZE)(_canonical)


def _resolved(
    href: str, base: str | None, canonical: Callable[[str], str | None] = _canonical
) -> str | None:
    """The canonical form of a link already stripped of blanks (see normalize_url)."""
    try:
        absolute = urljoin(base, href) if base else href
    except ValueError:
        return None
    # The fragment never counts (see _cleaned); without it, the links of a site's pages
    # come down to few distinct URLs, whose costly canonical forms the crawl caches.
    return canonical(absolute.partition("#")[0])


@lru_cache(maxsize=LINK_CACHE_SIZE)
def _link_resolved(href: str, base: str) -> str | None:
    return _resolved(href, base, _canonical_cached)


def _folder(url: str) -> str:
    """``url`` up to the last ``/`` of its path: ``http://h/a/b.html?q`` gives ``http://h/a/``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rpartition("/")[0] + "/", "", ""))


def _cleaned(url: str) -> str:
    """``url`` without what w3lib keeps: fragment, user info, default port, trailing dots
    in the host name, dot segments (recent w3lib removes them too; older releases do not).
    Applied before w3lib too, so its IDNA step never sees a trailing dot."""
    parts = urlsplit(url)
    scheme, port = parts.scheme.lower(), parts.port
    host = _host(parts.netloc)
    netloc = host if port in (None, DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _remove_dot_segments(parts.path or "/")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def _host(netloc: str) -> str:
    """The host of a netloc without user info, port or trailing dots (``example.com.``
    is ``example.com``); IPv6 addresses keep their brackets."""
    host_port = netloc.rpartition("@")[2]
    if host_port.startswith("["):
        return host_port[: host_port.find("]") + 1]
    return host_port.partition(":")[0].rstrip(".")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 dot-segment removal (recent w3lib does it too; older releases do not)."""
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
    """The landing key of the HTML page at the canonical ``url``: ``{host}/{path}``, always
    ending in ``.html`` or ``.htm`` so the HTML validator recognises it.

    The key is the URL's own text where it can be, marked with ``~`` where it cannot
    (a literal ``~`` in a path is written ``%7E``, which canonical URLs never contain):

    - ``/a/b.html`` → ``a/b.html`` and ``/d/`` → ``d/index.html``;
    - a name without ``.html``/``.htm``: ``/news/story`` → ``news/story~.html``, and the
      literal ``/d/index.html`` → ``d/index.html~.html`` (``d/index.html`` is ``/d/``'s);
    - a query: ``~`` and 16 hex digits of its SHA-256 (``/list?page=2`` →
      ``list~<hash>.html``, ``/d/?page=2`` → ``d/~<hash>.html``).

    ``{host}`` is the host name for https on port 443, ``{host}_{port}`` for http (port 80
    included) and ``{host}_{port}_https`` for https on another port.

    >>> page_key("https://example.com/news/")
    'example.com/news/index.html'
    >>> page_key("http://example.com:8080/news/story")
    'example.com_8080/news/story~.html'
    """
    return _key(url, page=True)


def asset_key(url: str) -> str:
    """The manifest key of a response that is not landed (not HTML, too large, gone):
    like :func:`page_key` but without an invented ``.html`` (``/logo.png`` is
    ``logo.png``). No asset key equals the page key of another URL."""
    return _key(url, page=False)


def records_key(url: str) -> str:
    """Where the records extracted from the page at ``url`` land."""
    return page_key(url) + RECORDS_SUFFIX


def _key(url: str, page: bool) -> str:
    parts = urlsplit(url)
    directory, _, name = parts.path.rpartition("/")
    folder = _host_folder(parts.scheme, _host(parts.netloc), parts.port)
    return f"{folder}{_escape(directory)}/{_name(name, parts.query, page)}"


def _name(name: str, query: str, page: bool) -> str:
    """Each (name, query) pair gets its own last segment, for pages and assets alike:
    the text before the first ``~`` is the escaped name, the text after it tells a query
    (hex digits) from an invented suffix (``.html`` or nothing)."""
    if query:
        return f"{_escape(name)}{MARK}{_short_hash(query)}" + (".html" if page else "")
    if not name:
        return INDEX
    if name == INDEX:
        return f"{INDEX}{MARK}.html"
    if page and not name.lower().endswith(HTML_SUFFIXES):
        return f"{_escape(name)}{MARK}.html"
    if not page and name.endswith(RECORDS_SUFFIX):  # a page's records have this key
        return f"{_escape(name)}{MARK}"
    return _escape(name)


def _escape(path: str) -> str:
    return path.replace(MARK, "%7E")


def _host_folder(scheme: str, host: str, port: int | None) -> str:
    """One folder per origin; the host's characters other than ``a-z0-9.-`` (``_``, IPv6
    brackets and colons) are percent-encoded so ``_`` only separates the port."""
    name = _HOST_UNSAFE.sub(lambda m: "".join(f"%{b:02X}" for b in m[0].encode()), host)
    if scheme == "https" and port in (None, DEFAULT_PORTS["https"]):
        return name
    suffix = "" if scheme == "http" else f"_{scheme}"
    return f"{name}_{DEFAULT_PORTS.get(scheme) if port is None else port}{suffix}"


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_DIGITS]


def canonical_domain(domain: str) -> str:
    """An ``allowed_domains`` entry as canonical URLs spell hosts (IDNA, lower case)."""
    bare = domain.strip().strip(".").lower()
    canonical = normalize_url(f"http://{bare}/") if bare else None
    return urlsplit(canonical).hostname or bare if canonical else bare


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
            tuple(canonical_domain(d) for d in domains),
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
