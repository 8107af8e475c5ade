"""Sending one API request: wait for the host's rate limit, send with httpx, and translate
whatever went wrong into this package's errors, in this one place::

    connection error, timeout                 -> TransientError
    HTTP 408, 429, 5xx                         -> TransientError (Retry-After honoured)
    any other 4xx                              -> TerminalError: status, masked URL, body start
    other httpx errors (bad URL, redirect loop) -> TerminalError
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from module_system.errors import TerminalError, TransientError
from module_system.observability.redaction import mask_url, redact
from module_system.sources.http.ratelimit import TokenBucket

BODY_START = 200  # characters of an error response quoted in the error message
RETRYABLE_STATUSES = frozenset({408, 429})


class ApiClient:
    """An :class:`httpx.Client` (auth, headers, timeout) behind the host's shared bucket."""

    def __init__(
        self, client: httpx.Client, bucket: TokenBucket, cancel: threading.Event | None = None
    ) -> None:
        self.client, self.bucket = client, bucket
        self.cancel = cancel or threading.Event()

    def build_request(
        self, method: str, url: str, params: dict[str, Any], json: Any
    ) -> httpx.Request:
        return self.client.build_request(method, url, params=params or None, json=json)

    def send(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` once; return a 2xx/3xx response or raise a translated error."""
        where = f"{request.method} {mask_url(str(request.url))}"  # before auth adds a key
        self.bucket.acquire(self.cancel)
        with translate_errors(where):
            response = self.client.send(request)
        self._check_status(response, where)
        return response

    def _check_status(self, response: httpx.Response, where: str) -> None:
        status = response.status_code
        if status < 400:
            return
        body = redact(response.text[:BODY_START].strip())
        message = f"{where}: HTTP {status} {response.reason_phrase}: {body}"
        if status in RETRYABLE_STATUSES or status >= 500:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if status == 429 and wait:
                self.bucket.pause(wait)  # every thread calling this host holds off
            raise TransientError(message, retry_after=wait)
        raise TerminalError(message)

    def close(self) -> None:
        self.client.close()


@contextmanager
def translate_errors(where: str) -> Iterator[None]:
    """Turn httpx exceptions into :class:`TransientError` / :class:`TerminalError`."""
    try:
        yield
    except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
        raise TransientError(f"{where}: {type(exc).__name__}: {redact(str(exc))}") from exc
    except httpx.HTTPError as exc:
        raise TerminalError(f"{where}: {type(exc).__name__}: {redact(str(exc))}") from exc


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
