"""What went wrong with an HTTP request, decided in this one place for every HTTP user (the
API source, the crawl, robots.txt, sitemaps, the OAuth2 token request)::

    connection refused, DNS failure            -> TransientError  connect_failed
    connection dropped, broken response        -> TransientError  connection_lost
    timeout                                    -> TransientError  timeout
    HTTP 408, 429, 5xx                         -> TransientError  http_NNN (Retry-After honoured)
    HTTP 401, 403, 407                         -> FatalError      http_NNN (nothing else will work)
    any other 4xx                              -> TerminalError   http_NNN
    bad URL, unsupported scheme, other httpx   -> TerminalError   bad_url / http_error

and :class:`ApiClient`, the API source's sender: it waits for the host's rate limit,
follows redirects hop by hop (each hop's origin checked), sends credentials only to the
origins allowed to receive them, and reads bodies up to ``max_response_bytes``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from module_system.errors import (
    FatalError,
    ModuleSystemError,
    TerminalError,
    TransientError,
)
from module_system.observability.redaction import mask_url, redact
from module_system.sources.http.egress import EgressPolicy
from module_system.sources.http.ratelimit import TokenBucket

BODY_START = 200  # characters of an error response quoted in the error message
ERROR_BODY_BYTES = 64 * 1024  # read at most this much of an error response
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_REDIRECTS = 10
FATAL_STATUSES = frozenset({401, 403, 407})


# --- the one decision of what is retried ---------------------------------------------------


def is_retryable_status(status: int) -> bool:
    """408 Request Timeout, 429 Too Many Requests and every 5xx may succeed later."""
    return status in (408, 429) or status >= 500


def status_error(status: int, message: str, retry_after: float | None = None) -> ModuleSystemError:
    """The error for an HTTP error status, with reason ``http_{status}``."""
    reason = f"http_{status}"
    if is_retryable_status(status):
        return TransientError(message, retry_after=retry_after, reason=reason)
    if status in FATAL_STATUSES:
        return FatalError(message, reason=reason)
    return TerminalError(message, reason=reason)


@contextmanager
def translate_errors(where: str | Callable[[], str]) -> Iterator[None]:
    """Turn httpx exceptions into this package's errors (see the module docstring);
    ``where`` (or what it returns) names the request in their messages."""
    try:
        yield
    except httpx.HTTPError as exc:
        transient, reason = _classify(exc)
        place = where if isinstance(where, str) else where()
        message = f"{place}: {type(exc).__name__}: {redact(str(exc))}"
        if transient:
            raise TransientError(message, reason=reason) from exc
        raise TerminalError(message, reason=reason) from exc


def _classify(exc: httpx.HTTPError) -> tuple[bool, str]:
    if isinstance(exc, httpx.TimeoutException):
        return True, "timeout"
    if isinstance(exc, httpx.ConnectError):
        return True, "connect_failed"
    if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError | httpx.DecodingError):
        return True, "connection_lost"
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return False, "bad_url"
    return False, "http_error"


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# --- bodies ----------------------------------------------------------------------------


class ResponseTooLarge(TerminalError):
    """A response body is larger than the configured cap; it was not read further."""

    default_reason = "too_large"


def read_capped(
    response: httpx.Response, limit: int, where: str | Callable[[], str], key: str
) -> bytes:
    """The (decoded) body of a streamed response, or :class:`ResponseTooLarge` as soon as
    it passes ``limit`` bytes (``key``: the setting that raises the limit)."""

    def too_large() -> str:
        place = where if isinstance(where, str) else where()
        return f"{place}: the response is larger than {key} ({limit} bytes)"

    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ResponseTooLarge(f"{too_large()}: Content-Length {declared}")
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise ResponseTooLarge(too_large())
        chunks.append(chunk)
    return b"".join(chunks)


class _CappedStream(httpx.SyncByteStream):
    def __init__(self, inner: Any, limit: int, message: str) -> None:
        self.inner, self.limit, self.message = inner, limit, message

    def __iter__(self) -> Iterator[bytes]:
        size = 0
        for chunk in self.inner:
            size += len(chunk)
            if size > self.limit:
                raise ResponseTooLarge(self.message)
            yield chunk

    def close(self) -> None:
        self.inner.close()


def cap_stream(response: httpx.Response, limit: int, where: str) -> None:
    """Make an unread response's :meth:`~httpx.Response.read` raise
    :class:`ResponseTooLarge` past ``limit`` bytes on the wire (for responses httpx reads
    itself, inside an auth flow)."""
    message = f"{where}: the response is larger than {limit} bytes"
    response.stream = _CappedStream(response.stream, limit, message)


# --- the API source's sender -----------------------------------------------------------


class ApiClient:
    """An :class:`httpx.Client` from :func:`~.transport.make_client`, the host's shared rate
    limit, and the service's egress policy, credentials and body cap."""

    def __init__(
        self,
        client: httpx.Client,
        bucket: TokenBucket,
        policy: EgressPolicy,
        *,
        auth: httpx.Auth | None = None,
        headers: Mapping[str, str] | None = None,
        cancel: threading.Event | None = None,
        deadline: float | None = None,
        max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self.client, self.bucket, self.policy = client, bucket, policy
        self.auth, self.headers = auth, dict(headers or {})
        self.cancel = cancel or threading.Event()
        self.deadline, self.max_bytes = deadline, max_bytes

    def build_request(
        self,
        method: str,
        url: str | httpx.URL,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        """A request to a permitted origin, with the custom headers and cookies only where
        credentials may go (auth is added when it is sent)."""
        self.policy.check_origin(url)
        credentialed = self.policy.gets_credentials(url)
        request = self.client.build_request(
            method, url, params=params or None, json=json, content=content,
            headers={**(self.headers if credentialed else {}), **(headers or {})},
        )  # fmt: skip
        if not credentialed:
            request.headers.pop("cookie", None)
        return request

    def send(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``, following redirects within the permitted origins; return the
        final 2xx response with its body read, or raise a translated error."""
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send_once(request)
            if not response.is_redirect:
                return response
            request = self._redirected(request, response)
        where = f"{request.method} {mask_url(str(request.url))}"
        raise TerminalError(f"{where}: more than {MAX_REDIRECTS} redirects", reason="redirects")

    def _send_once(self, request: httpx.Request) -> httpx.Response:
        method, url = request.method, request.url  # before auth adds a key to the URL

        def where() -> str:  # masked only when a message needs it: most responses are fine
            return f"{method} {mask_url(str(url))}"

        self.bucket.acquire(self.cancel, self.deadline)
        auth = self.auth if self.policy.gets_credentials(url) else None
        with translate_errors(where):
            raw = self.client.send(request, auth=auth, stream=True)
            try:
                if raw.is_redirect:
                    return raw
                if raw.status_code >= 400:
                    raise self._status_error(raw, where())
                body = read_capped(raw, self.max_bytes, where, "max_response_bytes")
            finally:
                raw.close()
        # The body as ``read()`` would have left it (decoded), without building a second
        # response: httpx keeps a read body in ``_content``.
        raw._content = body
        return raw

    def _status_error(self, raw: httpx.Response, where: str) -> ModuleSystemError:
        status = raw.status_code
        try:
            start = read_capped(raw, ERROR_BODY_BYTES, where, "the error body limit")
        except ResponseTooLarge:
            start = b""
        body = redact(start.decode("utf-8", "replace")[:BODY_START].strip())
        wait = retry_after_seconds(raw.headers.get("Retry-After"))
        if status == 429 and wait:
            self.bucket.pause(wait)  # every thread calling this host holds off
        message = f"{where}: HTTP {status} {raw.reason_phrase}: {body}"
        return status_error(status, message, wait)

    def _redirected(self, request: httpx.Request, response: httpx.Response) -> httpx.Request:
        """The next hop, as browsers and httpx do it: 303 (and 301/302 after a POST) turn
        into a GET without a body; 307/308 repeat the request."""
        target = request.url.join(response.headers["location"])
        self.policy.check_origin(target, f"redirect from {mask_url(str(request.url))} to")
        status, method = response.status_code, request.method
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            return self.build_request("GET", target)
        content_type = request.headers.get("content-type")
        headers = {"Content-Type": content_type} if content_type else None
        return self.build_request(method, target, content=request.content, headers=headers)

    def close(self) -> None:
        self.client.close()
