"""Demo part: a small local news site for the ``web_news_scraper`` service.

A generated folder (an index, a few articles, one page missing its headline, an image,
a robots.txt that keeps crawlers out of ``/drafts/``) served by a threaded
``http.server`` on a free loopback port; ``NEWS_SITE_URL`` points at it.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from module_system.demo.context import DemoContext

ARTICLES = [
    ("rates-hold", "Central bank holds rates steady", "2026-11-26"),
    ("harbour-bridge", "Harbour bridge reopens after repairs", "2026-11-27"),
    ("night-trains", "Night trains return to the northern line", "2026-11-28"),
]
STORY = "The council confirmed the plans on Thursday, after a long public consultation. " * 4


def _article(slug: str, title: str, day: str) -> str:
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title></head>"
        f'<body><nav><a href="/news/">All news</a></nav><article id="{slug}"><h1>{title}</h1>'
        f'<time datetime="{day}">{day}</time><div class="content"><p>{STORY}</p></div>'
        "</article></body></html>"
    )


def build_site(root: Path) -> None:
    """Write the demo site's files below ``root``."""
    news = root / "news"
    (root / "drafts").mkdir(parents=True, exist_ok=True)
    news.mkdir(parents=True, exist_ok=True)
    links = "".join(f'<li><a href="{slug}.html">{title}</a></li>' for slug, title, _ in ARTICLES)
    (root / "index.html").write_text(
        "<!doctype html><html><head><title>Demo News</title></head><body><h1>Demo News</h1>"
        '<a href="/news/">Latest news</a> <a href="/drafts/unpublished.html">drafts</a>'
        '<img src="/logo.png"></body></html>'
    )
    (news / "index.html").write_text(
        "<!doctype html><html><head><title>Latest news</title></head><body>"
        f'<ul>{links}<li><a href="broken.html">A page without its headline</a></li></ul>'
        '<a href="/logo.png">logo</a><a href="mailto:desk@news.example">contact</a></body></html>'
    )
    for slug, title, day in ARTICLES:
        (news / f"{slug}.html").write_text(_article(slug, title, day))
    (news / "broken.html").write_text(
        "<!doctype html><html><head><title>Oops</title></head>"
        "<body><p>Layout broke.</p></body></html>"
    )
    (root / "drafts" / "unpublished.html").write_text(
        _article("draft", "Not for crawlers", "2026-12-01")
    )
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(32))
    (root / "robots.txt").write_text("User-agent: *\nDisallow: /drafts/\n")


class WebDemoData:
    """Serves the generated news site while the demo batch runs."""

    name = "web"

    def __init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._root: Path | None = None

    def start(self, ctx: DemoContext) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="demo-news-", dir=ctx.workdir))
        build_site(self._root)
        handler = functools.partial(_QuietHandler, directory=str(self._root))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        ctx.env["NEWS_SITE_URL"] = f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass
