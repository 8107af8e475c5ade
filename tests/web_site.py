"""A small generated web site for the web source's tests, served over real HTTP on a free
loopback port by ``http.server`` in a thread.

``site.pages`` maps a path (with its query) to a :class:`Page`; tests may change pages
between runs. Every request is recorded in ``site.requests`` (path, headers, time).
Pages carry an ETag and honour ``If-None-Match`` (304), like most real servers.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ROBOTS = "User-agent: *\nDisallow: /private/\nCrawl-delay: {delay}\n"


@dataclass
class Page:
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    fail_first: int = 0  # answer with `status_while_failing` this many times first
    status_while_failing: int = 500
    etag: bool = True


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    at: float


def article(title: str, body: str = "", links: str = "", extra_head: str = "") -> bytes:
    text = body or f"{title}: " + "A news story with enough words to pass the length check. " * 5
    return (
        f"<!doctype html><html><head><title>{title}</title>{extra_head}</head><body>"
        f'<article><h1>{title}</h1><time datetime="2026-11-28">today</time>'
        f'<div class="content">{text}</div></article>{links}</body></html>'
    ).encode()


def html(body: str, head: str = "", title: str = "page") -> bytes:
    return f"<html><head><title>{title}</title>{head}</head><body>{body}</body></html>".encode()


def build_pages(port: int) -> dict[str, Page]:
    external = f"http://localhost:{port}/external.html"  # same server, another host name
    index_links = "".join(
        f'<a href="{href}">{href}</a>'
        for href in [
            "news/", "news/a1.html#comments", "/news/a2.html", "./latin1.html", "/moved",
            "/private/secret.html", "/image.png", "/report.txt", "/missing.html", "/flaky.html",
            "/throttled.html", "/based/page.html", "/dup.html?utm=1", "/noindex.html",
            "/nofollow.html", "/big.html", "/news/broken.html", external,
            "mailto:news@example.com", "javascript:alert(1)", "data:text/html,<p>x</p>",
            "file:///etc/passwd", "/index.html?print=1", "/away", "/loop",
        ]
    )  # fmt: skip
    return {
        "/": Page(html(index_links + '<link rel="next" href="/page2.html">', title="home")),
        "/page2.html": Page(article("Page two", links='<a href="/">home (a cycle)</a>')),
        "/news/": Page(
            article("News index", links='<a href="a1.html">a1</a><a href="a3.html">a3</a>')
        ),
        "/news/a1.html": Page(article("Article one", links='<a href="../">back to the index</a>')),
        "/news/a2.html": Page(article("Article two", links='<a href="/news/">news</a>')),
        "/news/a3.html": Page(article("Article three")),
        "/news/broken.html": Page(html("<p>This page has no article heading at all.</p>" * 10)),
        "/latin1.html": Page(
            article("Caf\u00e9 cr\u00e8me", body="Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e " * 20)
            .decode()
            .encode("latin-1"),
            content_type="text/html; charset=ISO-8859-1",
        ),
        "/moved": Page(b"", status=301, headers={"Location": "/news/moved-here.html"}),
        "/news/moved-here.html": Page(article("Moved here")),
        "/private/secret.html": Page(article("Secret")),
        "/image.png": Page(b"\x89PNG\r\n\x1a\n" + b"\0" * 64, content_type="image/png"),
        "/report.txt": Page(b"plain text, not HTML", content_type="text/plain"),
        "/flaky.html": Page(article("Flaky"), fail_first=1, status_while_failing=500),
        "/throttled.html": Page(
            article("Throttled"),
            fail_first=1,
            status_while_failing=429,
            headers={"Retry-After": "0"},
        ),
        "/based/page.html": Page(
            article(
                "Based",
                links='<a href="base-only.html">relative to base</a>',
                extra_head='<base href="/news/">',
            ),
        ),
        "/news/base-only.html": Page(article("Reached through base")),
        "/dup.html?utm=1": Page(
            article("Article one", extra_head='<link rel="canonical" href="/news/a1.html">')
        ),
        "/noindex.html": Page(
            article(
                "Not indexed",
                links='<a href="/via-noindex.html">on</a>',
                extra_head='<meta name="robots" content="noindex">',
            ),
        ),
        "/via-noindex.html": Page(article("Reached via noindex")),
        "/nofollow.html": Page(
            article(
                "No follow",
                links='<a href="/hidden.html">hidden</a>',
                extra_head='<meta name="robots" content="nofollow">',
            ),
        ),
        "/hidden.html": Page(article("Hidden")),
        "/big.html": Page(article("Big", body="x" * 6000)),
        "/external.html": Page(article("External")),
        "/away": Page(b"", status=302, headers={"Location": external}),
        "/loop": Page(b"", status=302, headers={"Location": "/loop?again=1"}),
        "/loop?again=1": Page(b"", status=302, headers={"Location": "/loop"}),
        "/sitemap.xml": Page(
            b'<?xml version="1.0"?><urlset><url><loc>/orphan.html</loc></url></urlset>'.replace(
                b"/orphan", f"http://127.0.0.1:{port}/orphan".encode()
            ),
            content_type="application/xml",
        ),
        "/orphan.html": Page(article("Only in the sitemap")),
        "/js-only.html": Page(
            html(
                '<div id="app"></div><script>document.getElementById("app").innerHTML='
                '"<article><h1>Rendered</h1></article>";</script>',
                title="js",
            )
        ),
    }


class Site:
    """The server and its pages; use as a context manager."""

    def __init__(self, robots_delay: float = 0.0) -> None:
        self.robots = ROBOTS.format(delay=robots_delay)
        self.requests: list[Request] = []
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.pages = build_pages(self.port)

    def __enter__(self) -> Site:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests.append(Request(path, headers, time.monotonic()))
        if path == "/robots.txt":
            return 200, {"Content-Type": "text/plain"}, self.robots.encode()
        page = self.pages.get(path)
        if page is None:
            return 404, {"Content-Type": "text/html"}, b"<html><body>not found</body></html>"
        with self._lock:
            failed = self._failures.get(path, 0)
            self._failures[path] = failed + 1
        if failed < page.fail_first:
            return page.status_while_failing, dict(page.headers), b"try again"
        return self._page(page, headers)

    def _page(self, page: Page, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        out = {"Content-Type": page.content_type, **page.headers}
        if page.etag and page.status == 200:
            etag = '"' + hashlib.sha256(page.body).hexdigest()[:16] + '"'
            out["ETag"] = etag
            if headers.get("if-none-match") == etag:
                return 304, {"ETag": etag}, b""
        return page.status, out, page.body


def _handler(site: Site) -> Any:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, out, body = site.answer(self.path, headers)
            self.send_response(status)
            for name, value in out.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler
