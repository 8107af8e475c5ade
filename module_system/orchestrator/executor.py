"""Where jobs run. The batch runner only needs ``submit`` and ``shutdown``, so a
distributed executor (Dask) can replace the thread pool without touching the rest."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class JobExecutor(Protocol):
    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        """Queue ``fn(*args)``; jobs start in submission order (FIFO)."""

    def shutdown(self, cancel_pending: bool = False) -> None:
        """Stop; with ``cancel_pending``, jobs not yet started never start."""


class ThreadJobExecutor:
    """Jobs on a local thread pool of ``max_workers`` threads (FIFO queue)."""

    def __init__(self, max_workers: int = 20) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="job")

    def submit(self, fn: Callable[..., T], /, *args: Any) -> Future[T]:
        return self._pool.submit(fn, *args)

    def shutdown(self, cancel_pending: bool = False) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel_pending)
