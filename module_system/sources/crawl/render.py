"""Optional: render pages with headless Chromium through Playwright (``render_js: true``).

Install with ``pip install 'module_system[js]'``; the browser is the ``chromium_path``
setting, else the system Chromium found on ``PATH`` (``/usr/bin/chromium``), else
Playwright's own download (``playwright install chromium``). Playwright's sync API
belongs to the thread that started it, so one renderer thread owns the browser and crawl
workers hand it URLs.

Every request Chromium makes (the page, its scripts, images, XHR, WebSockets) goes through the
service's egress policy first: one to a refused origin or address is aborted, never sent.
Chromium resolves names itself, so unlike our own client it re-resolves after the check;
the origin rule still holds, and the crawl fetched the page itself through the pinned client.
A browser that dies or stops answering fails the page after ``timeout`` plus a margin,
never holding the crawl.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from module_system.errors import ConfigError, TerminalError, TransientError
from module_system.sources.http.egress import EgressPolicy, EgressRefused

log = logging.getLogger(__name__)
SYSTEM_CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
STARTUP_SECONDS = 60.0  # launching Chromium
MARGIN_SECONDS = 15.0  # beyond the page timeout: opening a page, serialising the DOM
POLL_SECONDS = 0.5  # how often a waiting worker checks that the browser thread is alive
UNROUTED_SCHEMES = ("data:", "blob:", "about:")  # no network request behind these


class JsRenderer:
    """Loads a URL in a browser page and returns the DOM serialised after scripts ran."""

    def __init__(
        self,
        user_agent: str,
        timeout: float,
        executable: str | None = None,
        policy: EgressPolicy | None = None,
    ) -> None:
        try:
            from playwright.sync_api import sync_playwright  # noqa: F401
        except ImportError:
            raise ConfigError(
                "render_js: true needs Playwright: pip install 'module_system[js]'"
            ) from None
        self.user_agent, self.timeout, self.policy = user_agent, timeout, policy
        self.executable = executable or next(
            (path for name in SYSTEM_CHROMIUM if (path := shutil.which(name))), None
        )
        self.blocked = 0  # requests the policy aborted, for logs and tests
        self._jobs: queue.Queue[tuple[str, Future[str]] | None] = queue.Queue()
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._run, name="js-renderer", daemon=True)
        self._thread.start()
        try:
            self._ready.result(timeout=STARTUP_SECONDS)
        except FutureTimeout:
            raise ConfigError(
                f"render_js: Chromium did not start in {STARTUP_SECONDS:.0f}s"
            ) from None

    def render(self, url: str) -> str:
        """The rendered DOM of ``url``; fails (never hangs) when the browser is gone."""
        if not self._thread.is_alive():
            raise TerminalError(f"render {url}: the browser has stopped", reason="render_dead")
        future: Future[str] = Future()
        self._jobs.put((url, future))
        give_up = time.monotonic() + self.timeout + MARGIN_SECONDS
        while True:
            try:
                return future.result(timeout=POLL_SECONDS)
            except FutureTimeout:
                if future.done():
                    continue
                if not self._thread.is_alive():
                    raise TerminalError(
                        f"render {url}: the browser has stopped", reason="render_dead"
                    ) from None
                if time.monotonic() > give_up:
                    future.cancel()
                    raise TransientError(
                        f"render {url}: no answer from the browser", reason="timeout"
                    ) from None

    def _run(self) -> None:
        from playwright.sync_api import Error, sync_playwright

        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=self.executable)
                context = browser.new_context(user_agent=self.user_agent)
                if self.policy is not None:
                    context.route("**/*", self._guard)
                    if hasattr(context, "route_web_socket"):  # Playwright 1.48 and later
                        context.route_web_socket("**/*", self._guard_socket)
                self._ready.set_result(None)
                self._serve(context, Error)
                browser.close()
        except Exception as exc:  # launching failed: the crawl must say why
            if not self._ready.done():
                self._ready.set_exception(ConfigError(f"render_js: cannot start Chromium: {exc}"))
            else:
                log.error("the browser thread stopped: %s", exc)
        finally:
            self._fail_waiting()

    def _serve(self, context: Any, error_type: type[Exception]) -> None:
        while (job := self._jobs.get()) is not None:
            url, future = job
            if not future.set_running_or_notify_cancel():
                continue  # the worker gave up waiting
            try:
                page = context.new_page()
            except error_type as exc:  # the browser is gone: fail this page, then stop
                future.set_exception(TerminalError(f"render {url}: {exc}", reason="render_dead"))
                raise
            try:
                page.goto(url, wait_until="networkidle", timeout=self.timeout * 1000)
                future.set_result(page.content())
            except error_type as exc:
                future.set_exception(TransientError(f"render {url}: {exc}", reason="render"))
            finally:
                page.close()

    def _guard(self, route: Any) -> None:
        """Let a request through only when the egress policy allows its origin and address."""
        url = route.request.url
        if url.startswith(UNROUTED_SCHEMES) or not self._refused(url):
            route.continue_()
        else:
            route.abort("blockedbyclient")

    def _guard_socket(self, socket: Any) -> None:
        """The same for WebSockets, judged as the http(s) URL of their handshake."""
        url = str(socket.url)
        if self._refused("http" + url[2:] if url.startswith("ws") else url):
            socket.close()
        else:
            socket.connect_to_server()

    def _refused(self, url: str) -> bool:
        assert self.policy is not None
        try:
            self.policy.check_url(url)
        except (EgressRefused, OSError, ValueError) as exc:
            self.blocked += 1
            log.info("render: blocked %s: %s", url, exc)
            return True
        return False

    def _fail_waiting(self) -> None:
        """Fail every page still queued: no one will serve them."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not None and job[1].set_running_or_notify_cancel():
                job[1].set_exception(TerminalError(f"render {job[0]}: the browser has stopped"))

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join(timeout=10)
