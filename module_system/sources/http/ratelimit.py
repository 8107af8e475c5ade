"""Rate limits shared by every job and thread of the process, one token bucket per host.

Ten parallel jobs that call the same API share one bucket, so they do not multiply the
configured rate. A 429 with ``Retry-After`` pauses the whole host, not just the thread
that saw it, so one throttled request does not turn into a storm of them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from pydantic import Field

from module_system.config.models import StrictModel
from module_system.errors import JobCancelled, JobTimeout


class RateLimitConfig(StrictModel):
    """``rate_limit: {requests_per_second: 5, burst: 5}``."""

    requests_per_second: float = Field(
        gt=0, description="to the host, over every job and thread of the process"
    )
    burst: int = Field(1, ge=1, description="requests allowed at once after a quiet spell")


class TokenBucket:
    """A thread-safe token bucket. ``rate=None`` means unlimited (pauses still apply).

    :meth:`acquire` reserves a token under the lock and sleeps outside it, so waiting
    threads queue fairly in the order they asked.
    """

    def __init__(
        self,
        rate: float | None,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = float(burst)
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self.granted = 0  # requests let through, for reports and tests

    def acquire(
        self, cancel: threading.Event | None = None, deadline: float | None = None
    ) -> float:
        """Take one token, waiting as long as needed; return the seconds waited.

        Raises :class:`JobCancelled` when ``cancel`` is set (before or during the wait) and
        :class:`JobTimeout` when the wait would end past ``deadline`` (on this bucket's
        clock, ``time.monotonic`` by default): the request must not be sent then.
        """
        cancel = cancel or threading.Event()
        if cancel.is_set():
            raise JobCancelled("cancelled before the request was sent")
        wait = self.reserve()
        if wait <= 0:
            return wait
        if deadline is not None and self._clock() + wait > deadline:
            raise JobTimeout(f"the rate limit asks for a {wait:.1f}s wait, past the job's deadline")
        if cancel.wait(wait):
            raise JobCancelled("cancelled while waiting for the rate limit")
        return wait

    def reserve(self) -> float:
        """Take a token now; return how long the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            self.granted += 1
            pause = max(0.0, self._paused_until - now)
            if self.rate is None:
                return pause
            self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1  # may go negative: a reservation paid back by waiting
            return max(pause, -self._tokens / self.rate)

    def pause(self, seconds: float) -> None:
        """Hold every request to this host for ``seconds`` (a server's Retry-After)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def tighten(self, rate: float | None, burst: int) -> None:
        """Adopt a stricter limit when another service configures one for the same host."""
        if rate is None:
            return
        with self._lock:
            if self.rate is None:
                self.rate, self.burst = rate, burst
            else:
                self.rate, self.burst = min(self.rate, rate), min(self.burst, burst)
            self._tokens = min(self._tokens, self.burst)


_buckets: dict[str, TokenBucket] = {}
_buckets_lock = threading.Lock()
# Set on a Dask worker: buckets shared by the whole cluster (orchestrator.cluster_limits).
bucket_provider: Callable[[str, RateLimitConfig | None], TokenBucket] | None = None


def bucket_for(host: str, config: RateLimitConfig | None) -> TokenBucket:
    """The process-wide bucket of ``host`` (``name:port``); the strictest limit wins."""
    if bucket_provider is not None:
        return bucket_provider(host, config)
    rate, burst = (config.requests_per_second, config.burst) if config else (None, 1)
    key = host.lower()
    with _buckets_lock:
        bucket = _buckets.get(key)
        if bucket is None:
            bucket = _buckets[key] = TokenBucket(rate, burst)
        elif config is not None:
            bucket.tighten(rate, burst)
        return bucket
