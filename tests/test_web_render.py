"""``render_js: true``: a page whose article only exists after its script runs. Needs the
``js`` extra (Playwright) and a Chromium; skipped cleanly when either is missing."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from module_system.errors import ConfigError
from tests.test_web_limits import crawl
from tests.web_site import Site

HAVE_PLAYWRIGHT = importlib.util.find_spec("playwright") is not None
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as running:
        yield running


@pytest.mark.skipif(not (HAVE_PLAYWRIGHT and CHROMIUM), reason="needs playwright and chromium")
def test_render_js_lands_the_rendered_dom(site: Site, tmp_path: Path) -> None:
    site.pages["/"].body += b'<a href="/js-only.html">js</a>'
    items = crawl(site, tmp_path, render_js=True, max_depth=1, include=["js-only"])
    (page,) = [i for i in items if i.uri.endswith("/js-only.html")]
    assert b"<article><h1>Rendered</h1></article>" in page.extra["body"]


def test_render_js_without_playwright_says_how_to_install(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'module_system\[js\]'"):
        crawl(site, tmp_path, render_js=True)
