"""A small blocking pool of protocol connections with a cap, shared by FTP and SFTP.

One FTP control connection (or one SFTP session) carries one transfer at a time, but a
job fetches ``concurrency`` files at once. The pool opens connections lazily up to
``limit``, hands each to one thread at a time, and drops a connection that saw an error
instead of returning it, so a broken session is never reused. A thread waiting for a
connection gives up when the job is cancelled or its deadline passes: a transfer that holds
every connection must not hold the job past its timeout or Ctrl-C.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from module_system.errors import JobCancelled, TransientError

C = TypeVar("C")

# A connection idle for longer than this is checked (e.g. FTP NOOP) before reuse.
STALE_AFTER = 15.0
# How often a waiting thread looks at the cancel event (setting it notifies no one here).
CANCEL_POLL = 0.2


class ConnectionPool(Generic[C]):
    """``with pool.connection() as conn: ...`` — at most ``limit`` connections exist."""

    def __init__(
        self,
        opener: Callable[[], C],
        closer: Callable[[C], None],
        limit: int,
        is_alive: Callable[[C], bool] | None = None,
        cancel: threading.Event | None = None,
        deadline: float | None = None,
    ) -> None:
        self._open, self._close, self._is_alive = opener, closer, is_alive
        self.limit = limit
        self._cancel = cancel or threading.Event()
        self._deadline = deadline  # time.monotonic() value; None: wait as long as needed
        self._idle: list[tuple[C, float]] = []
        self._count = 0
        self._closed = False
        self._cond = threading.Condition()

    @contextmanager
    def connection(self) -> Iterator[C]:
        conn = self._acquire()
        try:
            yield conn
        except BaseException:
            self._discard(conn)
            raise
        self._release(conn)

    def _acquire(self) -> C:
        since: float | None = None
        with self._cond:
            while True:
                if self._closed:
                    raise RuntimeError("connection pool is closed")
                if self._idle:
                    conn, since = self._idle.pop()
                    break
                if self._count < self.limit:
                    self._count += 1  # reserve the slot before the slow connect
                    break
                self._cond.wait(self._wait_slice())
        if since is None:
            return self._open_reserved()
        if time.monotonic() - since > STALE_AFTER and self._is_alive and not self._is_alive(conn):
            self._discard(conn)
            return self._acquire()
        return conn

    def _wait_slice(self) -> float:
        """Seconds to wait for a free connection before looking again; raises once the job
        is cancelled or past its deadline."""
        if self._cancel.is_set():
            raise JobCancelled("cancelled while waiting for a free connection")
        if self._deadline is None:
            return CANCEL_POLL
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TransientError(
                f"no free connection (all {self.limit} busy) before the job's deadline",
                reason="pool_timeout",
            )
        return min(left, CANCEL_POLL)

    def _open_reserved(self) -> C:
        try:
            return self._open()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, conn: C) -> None:
        with self._cond:
            if not self._closed:
                self._idle.append((conn, time.monotonic()))
                self._cond.notify()
                return
        self._discard(conn)

    def _discard(self, conn: C) -> None:
        try:
            self._close(conn)
        finally:
            with self._cond:
                self._count -= 1
                self._cond.notify()

    def close(self) -> None:
        """Close idle connections; connections in use are closed when released."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for conn, _ in idle:
            self._discard(conn)
