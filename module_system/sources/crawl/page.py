"""What the crawler reads from a page: its links, ``<base>``, ``rel=canonical`` and meta
robots (``noindex`` / ``nofollow``, also from the ``X-Robots-Tag`` header).
Parsed with selectolax's Lexbor backend, an HTML5 parser written in C."""

from __future__ import annotations

from dataclasses import dataclass, field

from selectolax.lexbor import LexborHTMLParser

from module_system.sources.crawl.urls import normalize_links, normalize_url

LINK_SELECTOR = "a[href], area[href], link[rel~=next][href]"


@dataclass
class ParsedPage:
    tree: LexborHTMLParser
    links: list[str] = field(default_factory=list)  # absolute, normalised, in page order
    canonical: str | None = None
    noindex: bool = False
    nofollow: bool = False


def parse_page(text: str, url: str, robots_header: str | None = None) -> ParsedPage:
    tree = LexborHTMLParser(text)
    page = ParsedPage(tree)
    directives = _robots_directives(tree, robots_header)
    page.noindex = bool(directives & {"noindex", "none"})
    page.nofollow = bool(directives & {"nofollow", "none"})
    base = _base_url(tree, url)
    canonical = tree.css_first("link[rel~=canonical][href]")
    if canonical is not None:
        page.canonical = normalize_url(canonical.attributes.get("href") or "", base)
    if not page.nofollow:
        hrefs = (n.attributes.get("href") or "" for n in tree.css(LINK_SELECTOR))
        page.links = normalize_links(hrefs, base)
    return page


def _base_url(tree: LexborHTMLParser, url: str) -> str:
    node = tree.css_first("base[href]")
    href = node.attributes.get("href") if node is not None else None
    return (normalize_url(href, url) or url) if href else url


def _robots_directives(tree: LexborHTMLParser, header: str | None) -> set[str]:
    values = [header or ""]
    for node in tree.css("meta[name][content]"):
        if (node.attributes.get("name") or "").strip().lower() == "robots":
            values.append(node.attributes.get("content") or "")
    return {part.strip().lower() for value in values for part in value.split(",")}
