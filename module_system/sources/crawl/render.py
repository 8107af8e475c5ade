"""Optional: render pages with headless Chromium through Playwright (``render_js: true``).

Install with ``pip install 'module_system[js]'``; the browser is the ``chromium_path``
setting, else the system Chromium found on ``PATH`` (``/usr/bin/chromium``), else
Playwright's own download (``playwright install chromium``). Playwright's sync API
belongs to the thread that started it, so one renderer thread owns the browser and crawl
workers hand it URLs.
"""

from __future__ import annotations

import queue
import shutil
import threading
from concurrent.futures import Future
from typing import Any

from module_system.errors import ConfigError, TransientError

SYSTEM_CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


class JsRenderer:
    """Loads a URL in a browser page and returns the DOM serialised after scripts ran."""

    def __init__(self, user_agent: str, timeout: float, executable: str | None = None) -> None:
        try:
            from playwright.sync_api import sync_playwright  # noqa: F401
        except ImportError:
            raise ConfigError(
                "render_js: true needs Playwright: pip install 'module_system[js]'"
            ) from None
        self.user_agent, self.timeout = user_agent, timeout
        self.executable = executable or next(
            (path for name in SYSTEM_CHROMIUM if (path := shutil.which(name))), None
        )
        self._jobs: queue.Queue[tuple[str, Future[str]] | None] = queue.Queue()
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, name="js-renderer", daemon=True)
        self._thread.start()
        self._ready.result()

    def render(self, url: str) -> str:
        future: Future[str] = Future()
        self._jobs.put((url, future))
        return future.result()

    def _run(self) -> None:
        from playwright.sync_api import Error, sync_playwright

        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=self.executable)
                context = browser.new_context(user_agent=self.user_agent)
                self._ready.set_result(None)
                self._serve(context, Error)
                browser.close()
        except Exception as exc:  # launching failed: the crawl must say why
            if not self._ready.done():
                self._ready.set_exception(ConfigError(f"render_js: cannot start Chromium: {exc}"))

    def _serve(self, context: Any, error_type: type[Exception]) -> None:
        while (job := self._jobs.get()) is not None:
            url, future = job
            page = context.new_page()
            try:
                page.goto(url, wait_until="networkidle", timeout=self.timeout * 1000)
                future.set_result(page.content())
            except error_type as exc:
                future.set_exception(TransientError(f"render {url}: {exc}"))
            finally:
                page.close()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=10)
