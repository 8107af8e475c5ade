"""One HTTP request of the crawl, through the shared HTTP layer (:mod:`..http`): the
service's egress policy, the one error translator and the one decision of what is retried::

    connection error, timeout, broken response  -> TransientError
    HTTP 408, 429, 5xx                          -> TransientError (Retry-After honoured)
    invalid URL, unsupported protocol           -> TerminalError
    an origin or address the policy refuses     -> EgressRefused (nothing is sent)
    any other status                            -> returned: the crawler decides

Redirects are not followed here: the crawler checks each hop against its scope.
Bodies are read only when wanted (HTML, robots.txt, sitemaps) and never past a cap.
Cookies a site sets go back only to the origins of the start URLs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from module_system.observability.redaction import mask_url
from module_system.sources.http.client import (
    is_retryable_status,
    retry_after_seconds,
    status_error,
    translate_errors,
)
from module_system.sources.http.egress import EgressPolicy, EgressRefused
from module_system.sources.http.transport import make_client

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
    """A shared, thread-safe client with connection reuse, bound to the crawl's policy."""

    def __init__(
        self,
        user_agent: str,
        timeout: float,
        max_bytes: int,
        connections: int,
        policy: EgressPolicy,
    ) -> None:
        self.max_bytes, self.policy = max_bytes, policy
        self.client = make_client(
            policy,
            timeout=timeout,
            headers={"User-Agent": user_agent, "Accept": "text/html,*/*;q=0.8"},
            connections=connections,
        )

    def get(
        self, url: str, headers: Mapping[str, str] | None = None, any_type: bool = False
    ) -> Response:
        """GET ``url`` once. The body is read for 2xx HTML responses (any 2xx response with
        ``any_type``), up to ``max_bytes``."""
        self.policy.check_origin(url)
        request = self.client.build_request("GET", url, headers=headers)
        if not self.policy.gets_credentials(url):
            request.headers.pop("cookie", None)
        with _refusals_name(url), translate_errors(f"GET {mask_url(url)}"):
            raw = self.client.send(request, stream=True)
            try:
                _raise_for_retryable(url, raw)
                media_type = raw.headers.get("content-type", "").split(";")[0].strip().lower()
                response = Response(str(raw.url), raw.status_code, raw.headers, media_type)
                if raw.is_success and (any_type or not media_type or response.is_html):
                    self._read(raw, response)
            finally:
                raw.close()
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


@contextmanager
def _refusals_name(url: str) -> Iterator[None]:
    """An address refusal from the transport, restated with the URL it was for."""
    try:
        yield
    except EgressRefused as exc:
        shown = mask_url(url)
        raise EgressRefused(f"GET {shown}: {exc}", shown, reason=exc.reason) from exc


def _raise_for_retryable(url: str, raw: httpx.Response) -> None:
    if is_retryable_status(raw.status_code):
        raise status_error(
            raw.status_code,
            f"GET {mask_url(url)}: HTTP {raw.status_code} {raw.reason_phrase}",
            retry_after_seconds(raw.headers.get("retry-after")),
        )
