"""Seed URLs from sitemaps: ``<urlset>`` pages and ``<sitemapindex>`` children (gzip too).

``<loc>`` elements are read with a regular expression: no XML entity expansion, and a
malformed sitemap still gives what it can. Size and count are bounded. A sitemap on an
origin the egress policy refuses is not fetched; ``refused`` hears about it.
"""

from __future__ import annotations

import html
import logging
import re
import zlib
from collections.abc import Callable

from module_system.errors import ModuleSystemError
from module_system.retry import Retrier
from module_system.sources.crawl.fetcher import Fetcher
from module_system.sources.http.egress import EgressRefused

log = logging.getLogger(__name__)
MAX_SITEMAPS = 50
_LOC = re.compile(rb"<loc>\s*(.*?)\s*</loc>", re.S | re.I)


def sitemap_urls(
    fetcher: Fetcher,
    retrier: Retrier,
    sitemaps: list[str],
    refused: Callable[[EgressRefused], None] = lambda exc: None,
) -> list[str]:
    """Page URLs listed by ``sitemaps`` and the sitemaps they index."""
    queue, seen, pages = list(sitemaps), set(sitemaps), []
    while queue and len(seen) <= MAX_SITEMAPS:
        url = queue.pop(0)
        body = _fetch(fetcher, retrier, url, refused)
        if body is None:
            continue
        locs = [html.unescape(m.decode("utf-8", "replace")) for m in _LOC.findall(body)]
        if b"<sitemapindex" in body[:2048].lower():
            children = [u for u in locs if u not in seen]
            seen.update(children)
            queue.extend(children)
        else:
            pages.extend(locs)
    return pages


def _fetch(
    fetcher: Fetcher, retrier: Retrier, url: str, refused: Callable[[EgressRefused], None]
) -> bytes | None:
    try:
        fetcher.policy.check_origin(url, "sitemap")
        response = retrier.call(lambda: fetcher.get(url, any_type=True), f"sitemap {url}")
    except EgressRefused as exc:
        log.warning("sitemap %s skipped: %s", url, exc)
        refused(exc)
        return None
    except ModuleSystemError as exc:
        log.warning("sitemap %s skipped: %s", url, exc)
        return None
    if response.status != 200 or response.body is None:
        log.warning("sitemap %s skipped: HTTP %s", url, response.status)
        return None
    body = response.body
    if body[:2] == b"\x1f\x8b":
        try:
            body = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body, fetcher.max_bytes)
        except zlib.error as exc:
            log.warning("sitemap %s skipped: bad gzip: %s", url, exc)
            return None
    return body
