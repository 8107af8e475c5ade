"""API rate limits that hold across a Dask cluster, not per worker.

In one process every job shares one token bucket per host
(:mod:`module_system.sources.http.ratelimit`). On a cluster the jobs calling one API run
in several processes, so the buckets must live where all of them can reach one copy: the
scheduler. :class:`ClusterLimits`, a scheduler plugin, holds the buckets (the same
:class:`TokenBucket`, on the scheduler's one clock, so worker clocks never matter). For
each request a worker takes a token there over the connection it already keeps to the
scheduler (one round trip), then waits the time it was given, locally. A 429's
``Retry-After`` pauses the host for the whole cluster. The strictest limit configured for
a host wins, as in one process.

Why the scheduler: it is the one process every job of the batch already depends on, so
the limiter cannot be lost while the jobs it limits carry on. When the scheduler is lost,
a worker asking for a token gets :class:`TransientError` (reason ``rate_limiter_lost``)
and does not send the request (fail closed); the job's retrier tries again, and the job
ends failed if no scheduler comes back. A new scheduler starts with full buckets: at most
one burst more than the limit. A ``distributed.Semaphore`` would cap requests in flight,
not requests per second; a limiter in PostgreSQL would add a write per request to the
state store.

Connection caps (``max_connections``, ``per_host_concurrency``) are per service, and
the service lease runs one job per service on the whole cluster, so they hold as they
are.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from distributed import SchedulerPlugin, Worker
from distributed.utils import sync

from module_system._version import __version__
from module_system.errors import TransientError
from module_system.sources.http import ratelimit
from module_system.sources.http.ratelimit import RateLimitConfig, TokenBucket

log = logging.getLogger(__name__)
PLUGIN_NAME = f"module_system-limits-{__version__}"
RESERVE, PAUSE, STATS = (
    "module_system_rate_reserve",
    "module_system_rate_pause",
    "module_system_rate_stats",
)
RPC_TIMEOUT = 10.0  # seconds to wait for the scheduler's answer


class ClusterLimits(SchedulerPlugin):
    """The cluster's token buckets, one per host, kept by the scheduler."""

    name = PLUGIN_NAME
    idempotent = True  # a batch finding the plugin there keeps its buckets

    def __init__(self, client_version: str = __version__) -> None:
        self.client_version = client_version  # all the client sends: the rest is made here

    async def start(self, scheduler: Any) -> None:
        if self.client_version != __version__:
            raise RuntimeError(f"the Dask scheduler has module_system {__version__}, "
                               f"the client {self.client_version}")  # fmt: skip
        self.buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        scheduler.handlers.update({RESERVE: self.reserve, PAUSE: self.pause, STATS: self.stats})

    def reserve(self, host: str, rate: float | None, burst: int) -> float:
        """Take a token of ``host``'s bucket; the seconds to wait before using it."""
        return self._bucket(host, rate, burst).reserve()

    def pause(self, host: str, seconds: float) -> None:
        self._bucket(host, None, 1).pause(seconds)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per host: requests granted and the limit in force (for tests and operators)."""
        with self._lock:
            return {host: {"granted": b.granted, "rate": b.rate, "burst": b.burst}
                    for host, b in self.buckets.items()}  # fmt: skip

    def _bucket(self, host: str, rate: float | None, burst: int) -> TokenBucket:
        key = host.lower()
        with self._lock:
            bucket = self.buckets.get(key)
            if bucket is None:
                bucket = self.buckets[key] = TokenBucket(rate, burst)
            else:
                bucket.tighten(rate, burst)
            return bucket


class ClusterBucket(TokenBucket):
    """A worker's handle on the scheduler's bucket of one host."""

    def __init__(self, worker: Worker, host: str, config: RateLimitConfig | None) -> None:
        rate, burst = (config.requests_per_second, config.burst) if config else (None, 1)
        super().__init__(rate, burst)
        self.worker, self.host = worker, host

    def reserve(self) -> float:
        wait = float(self._call(RESERVE, host=self.host, rate=self.rate, burst=self.burst))
        with self._lock:
            self.granted += 1
        return wait

    def pause(self, seconds: float) -> None:
        self._call(PAUSE, host=self.host, seconds=seconds)

    def tighten(self, rate: float | None, burst: int) -> None:
        pass  # the scheduler keeps the strictest limit

    def _call(self, op: str, **kwargs: Any) -> Any:
        try:
            method = getattr(self.worker.scheduler, op)
            return sync(self.worker.loop, method, callback_timeout=RPC_TIMEOUT, **kwargs)
        except Exception as exc:
            raise TransientError(
                f"rate limit of {self.host}: the Dask scheduler that keeps it did not answer "
                f"({type(exc).__name__}: {exc}); the request was not sent",
                reason="rate_limiter_lost",
            ) from exc


def share_buckets_through(worker: Worker) -> None:
    """From now on, API sources in this worker process take tokens from the scheduler."""
    ratelimit.bucket_provider = lambda host, config: ClusterBucket(worker, host, config)
