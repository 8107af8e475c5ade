"""What to fetch next: every URL once, per-origin politeness, a page budget.

Workers call :meth:`Frontier.next` and get a :class:`Task`: the first task of an origin
loads its robots.txt, and no page of that origin is handed out before the rules (and the
``Crawl-delay``) are known. After that a page is handed out when its origin has fewer than
``per_host`` requests in flight and its delay since the last start has passed.

Memory is bounded by ``max_pages``: URLs handed out plus URLs queued never exceed it, and
a link found once the budget is full is not queued (nor remembered). URLs robots.txt
disallows are refused when their origin's rules are known, and taken out of the queue
(giving their place back) when the rules arrive, so they never count against the budget.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from module_system.sources.crawl.robots import RobotsRules
from module_system.sources.crawl.urls import origin as origin_of


@dataclass(frozen=True)
class Request:
    url: str
    depth: int


@dataclass(frozen=True)
class Task:
    """Load ``origin``'s robots.txt (``request`` is None) or fetch ``request``."""

    origin: str
    request: Request | None = None


@dataclass
class _Origin:
    pending: deque[Request] = field(default_factory=deque)
    rules: RobotsRules | None = None
    loading: bool = False
    in_flight: int = 0
    delay: float = 0.0
    next_start: float = 0.0


class Frontier:
    """Thread-safe; :meth:`next` blocks until a task is ready or the crawl is over."""

    def __init__(self, per_host: int, delay: float, max_pages: int) -> None:
        self.per_host, self.delay, self.max_pages = per_host, delay, max_pages
        self.dispatched = 0  # pages handed out
        self.queued = 0  # pages waiting; dispatched + queued <= max_pages
        self.disallowed = 0  # links robots.txt kept us from (each time one is found)
        self.dropped = 0  # links not queued because the budget was full (each time found)
        self._origins: dict[str, _Origin] = {}
        self._seen: set[str] = set()  # queued, handed out or claimed: at most ~max_pages
        self._in_flight = 0
        self._stopped = False
        self._cond = threading.Condition()

    def add(self, url: str, depth: int) -> bool:
        """Queue ``url`` unless it was queued or claimed before, robots.txt disallows it
        or the page budget is spent."""
        with self._cond:
            if self._stopped or url in self._seen:
                return False
            host = self._origins.get(origin_of(url))
            if host is not None and host.rules is not None and not host.rules.allowed(url):
                self.disallowed += 1
                return False
            if self.dispatched + self.queued >= self.max_pages:
                self.dropped += 1
                return False
            self._seen.add(url)
            if host is None:
                host = self._origins[origin_of(url)] = _Origin()
            host.pending.append(Request(url, depth))
            self.queued += 1
            self._cond.notify()
            return True

    def claim(self, url: str) -> bool:
        """Mark ``url`` as taken care of (a redirect target, a canonical URL) without
        queueing it; False when it was already queued or claimed."""
        with self._cond:
            if url in self._seen:
                return False
            self._seen.add(url)
            return True

    def next(self) -> Task | None:
        with self._cond:
            while not self._stopped:
                task, wait = self._pick(time.monotonic())
                if task is not None:
                    self._in_flight += 1
                    return task
                if self._in_flight == 0 and wait is None:
                    break  # nothing pending, nothing running: the crawl is over
                self._cond.wait(wait)
            self._cond.notify_all()
            return None

    def _pick(self, now: float) -> tuple[Task | None, float | None]:
        soonest: float | None = None
        for name, host in self._origins.items():
            if not host.pending or host.in_flight >= self.per_host:
                continue
            if host.rules is None:
                if host.loading:
                    continue
                host.loading = True
                host.in_flight += 1
                return Task(name), None
            if now < host.next_start:
                soonest = min(soonest or host.next_start - now, host.next_start - now)
                continue
            request = self._next_request(host)
            if request is not None:
                host.in_flight += 1
                host.next_start = now + host.delay
                return Task(name, request), None
        return None, soonest

    def _next_request(self, host: _Origin) -> Request | None:
        if not host.pending:
            return None
        self.queued -= 1
        self.dispatched += 1
        return host.pending.popleft()

    def robots_loaded(self, origin: str, rules: RobotsRules) -> None:
        with self._cond:
            host = self._origins[origin]
            host.rules, host.loading = rules, False
            host.delay = max(self.delay, rules.crawl_delay())
            allowed = deque(r for r in host.pending if rules.allowed(r.url))
            refused = len(host.pending) - len(allowed)
            host.pending, self.queued = allowed, self.queued - refused
            self.disallowed += refused

    def done(self, task: Task) -> None:
        """The task is finished and the links it found are queued."""
        with self._cond:
            self._in_flight -= 1
            self._origins[task.origin].in_flight -= 1
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def rules(self, origin: str) -> RobotsRules | None:
        """The robots.txt rules of ``origin`` when they are loaded."""
        with self._cond:
            host = self._origins.get(origin)
            return host.rules if host else None
