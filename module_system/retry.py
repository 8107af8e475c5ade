"""Retrying transient failures: exponential backoff with full jitter, Retry-After honoured,
and a count of retries per reason (the error's ``reason`` code) for the job's report."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from module_system.config.models import RetryConfig
from module_system.errors import JobCancelled, JobTimeout, TransientError

T = TypeVar("T")
log = logging.getLogger(__name__)


class Retrier:
    """Calls a function until it succeeds, fails terminally, or attempts run out."""

    def __init__(
        self,
        config: RetryConfig,
        cancel: threading.Event | None = None,
        deadline: float | None = None,
    ) -> None:
        self.config = config
        self.cancel = cancel or threading.Event()
        self.deadline = deadline  # time.monotonic() of the job's timeout: no sleep past it
        self.retries: Counter[str] = Counter()
        self._lock = threading.Lock()

    def delay(self, attempt: int, error: TransientError) -> float:
        if error.retry_after is not None:
            # The server knows best when it will take requests again, within reason.
            return min(error.retry_after, self.config.max_retry_after)
        ceiling = min(self.config.max_backoff, self.config.backoff * 2 ** (attempt - 1))
        return random.uniform(0, ceiling)

    def call(self, fn: Callable[[], T], what: str) -> T:
        for attempt in range(1, self.config.attempts + 1):
            try:
                return fn()
            except TransientError as exc:
                if attempt == self.config.attempts:
                    raise
                wait = self.delay(attempt, exc)
                if self.deadline is not None and time.monotonic() + wait > self.deadline:
                    raise JobTimeout(
                        f"{what}: the job's deadline comes before the next retry ({exc})"
                    ) from exc
                with self._lock:
                    self.retries[exc.reason] += 1
                log.warning(
                    "%s: attempt %d/%d failed (%s); retrying in %.2fs",
                    what,
                    attempt,
                    self.config.attempts,
                    exc,
                    wait,
                )
                if self.cancel.wait(wait):
                    raise JobCancelled(f"{what}: cancelled while waiting to retry") from exc
        raise AssertionError("unreachable")  # pragma: no cover
