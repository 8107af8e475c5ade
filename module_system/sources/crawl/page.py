"""What the crawler reads from a page: its links, ``<base>``, ``rel=canonical`` and meta
robots (``noindex`` / ``nofollow``, also from the ``X-Robots-Tag`` header).
Parsed with selectolax's Lexbor backend, an HTML5 parser written in C."""

from __future__ import annotations

from dataclasses import dataclass, field

from selectolax.lexbor import LexborHTMLParser

from module_system.sources.crawl.urls import normalize_links, normalize_url

LINK_SELECTOR = "a[href], area[href], link[rel~=next][href]"
HEAD_SELECTOR = "base[href], link[rel~=canonical][href], meta[name][content]"


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
    head = _HeadTags.find(tree)
    directives = _robots_directives(head.robots, robots_header)
    page.noindex = bool(directives & {"noindex", "none"})
    page.nofollow = bool(directives & {"nofollow", "none"})
    base = (normalize_url(head.base, url) or url) if head.base else url
    if head.canonical is not None:
        page.canonical = normalize_url(head.canonical, base)
    if not page.nofollow:
        hrefs = (n.attrs.get("href") or "" for n in tree.css(LINK_SELECTOR))  # not all attributes
        page.links = normalize_links(hrefs, base)
    return page


@dataclass
class _HeadTags:
    """The first ``<base href>``'s and ``rel=canonical``'s hrefs and the meta robots
    values, found in one pass over the tree (each selector alone is a pass of its own)."""

    base: str | None = None
    canonical: str | None = None
    robots: list[str] = field(default_factory=list)

    @classmethod
    def find(cls, tree: LexborHTMLParser) -> _HeadTags:
        found = cls()
        for node in tree.css(HEAD_SELECTOR):  # one selector per tag: the tag tells which
            tag, attributes = node.tag, node.attributes
            if tag == "meta":
                if (attributes.get("name") or "").strip().lower() == "robots":
                    found.robots.append(attributes.get("content") or "")
            elif tag == "base":
                if found.base is None:
                    found.base = attributes.get("href") or ""
            elif found.canonical is None:  # link
                found.canonical = attributes.get("href") or ""
        return found


def _robots_directives(values: list[str], header: str | None) -> set[str]:
    return {part.strip().lower() for value in [header or "", *values] for part in value.split(",")}
