"""One HTTP request of the crawl, with httpx errors and HTTP statuses translated here::

    connection error, timeout, broken response  -> TransientError
    HTTP 429, 5xx                               -> TransientError (Retry-After honoured)
    invalid URL, unsupported protocol           -> TerminalError
    any other status                            -> returned: the crawler decides

Redirects are not followed here: the crawler checks each hop against its scope.
Bodies are read only when wanted (HTML, robots.txt, sitemaps) and never past a cap.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from module_system.errors import TerminalError, TransientError
from module_system.observability.redaction import mask_url

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_SNIFF_BYTES = 1024
_HTML_MARKERS = (b"<!doctype html", b"<html", b"<head", b"<body")


@dataclass
class Response:
    """What the crawler needs of a response. ``body`` is None when it was not read;
    ``note`` then says why (not HTML, too large)."""

    url: str
    status: int
    headers: httpx.Headers
    media_type: str
    body: bytes | None = None
    note: str | None = None

    @property
    def is_html(self) -> bool:
        return self.media_type in HTML_TYPES


class Fetcher:
    """A shared, thread-safe :class:`httpx.Client` with connection reuse."""

    def __init__(self, user_agent: str, timeout: float, max_bytes: int, connections: int) -> None:
        self.max_bytes = max_bytes
        self.client = httpx.Client(
            headers={"User-Agent": user_agent, "Accept": "text/html,*/*;q=0.8"},
            timeout=timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )

    def get(
        self, url: str, headers: Mapping[str, str] | None = None, any_type: bool = False
    ) -> Response:
        """GET ``url`` once. The body is read for 2xx HTML responses (any 2xx response with
        ``any_type``), up to ``max_bytes``."""
        with _translated(url), self.client.stream("GET", url, headers=headers) as raw:
            _raise_for_retryable(url, raw)
            media_type = raw.headers.get("content-type", "").split(";")[0].strip().lower()
            response = Response(str(raw.url), raw.status_code, raw.headers, media_type)
            if raw.is_success and (any_type or not media_type or response.is_html):
                self._read(raw, response)
            return response

    def _read(self, raw: httpx.Response, response: Response) -> None:
        declared = int(raw.headers.get("content-length") or 0)
        if declared > self.max_bytes:
            response.note = f"larger than max_page_bytes ({declared} > {self.max_bytes})"
            return
        chunks, size = [], 0
        for chunk in raw.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                response.note = f"larger than max_page_bytes ({self.max_bytes})"
                return
            chunks.append(chunk)
        body = b"".join(chunks)
        if not response.media_type:  # no Content-Type: sniff, as browsers do
            head = body[:_SNIFF_BYTES].lstrip().lower()
            if not head.startswith(_HTML_MARKERS) and b"<html" not in head:
                response.note = "no Content-Type and the body does not look like HTML"
                return
            response.media_type = "text/html"
        response.body = body

    def close(self) -> None:
        self.client.close()


def _raise_for_retryable(url: str, raw: httpx.Response) -> None:
    if raw.status_code == 429 or raw.status_code >= 500:
        raise TransientError(
            f"GET {mask_url(url)}: HTTP {raw.status_code} {raw.reason_phrase}",
            retry_after=parse_retry_after(raw.headers.get("retry-after")),
        )


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    >>> parse_retry_after("3"), parse_retry_after(None), parse_retry_after("soon")
    (3.0, None, None)
    """
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


@contextmanager
def _translated(url: str) -> Iterator[None]:
    where = f"GET {mask_url(url)}"
    try:
        yield
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise TerminalError(f"{where}: {exc}") from exc
    except httpx.HTTPError as exc:  # timeouts, connection and protocol errors
        raise TransientError(f"{where}: {type(exc).__name__}: {exc}") from exc
