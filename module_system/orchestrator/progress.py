"""Live progress of jobs that run in other processes, as small messages.

A job on a Dask worker counts its files into an :class:`EventProgress`, which sends what
it gathered at most every quarter of a second (and once at the end) instead of a message
per file. The client applies each message to its :class:`BatchStats`, so the live table
is the same as in a local run. Messages are plain dicts (they travel as Dask events):

``{"kind": "started", "job": id, "service": id, "module": "s3_module", "worker": address}``
``{"kind": "files", "job": id, "listed": n, "outcomes": {"landed": n, ...}, "bytes": n}``
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from module_system.orchestrator.stats import BatchStats
from module_system.results import FileOutcome

Message = dict[str, Any]
SEND_INTERVAL = 0.25  # seconds


class EventProgress:
    """One job's file counts, sent in batches through ``send`` (the pipeline's Progress)."""

    def __init__(
        self, send: Callable[[Message], None], job_id: str, interval: float = SEND_INTERVAL
    ) -> None:
        self._send, self._job_id, self._interval = send, job_id, interval
        self._lock = threading.Lock()
        self._listed = 0
        self._outcomes: Counter[str] = Counter()
        self._bytes = 0
        self._due = time.monotonic() + interval

    def file_listed(self) -> None:
        with self._lock:
            self._listed += 1
        self._send_if_due()

    def file_finished(self, outcome: FileOutcome, nbytes: int) -> None:
        with self._lock:
            self._outcomes[outcome.value] += 1
            self._bytes += nbytes
        self._send_if_due()

    def _send_if_due(self) -> None:
        if time.monotonic() >= self._due:
            self.flush()

    def flush(self) -> None:
        """Send what was counted since the last message, if anything."""
        with self._lock:
            message = {"kind": "files", "job": self._job_id, "listed": self._listed,
                       "outcomes": dict(self._outcomes), "bytes": self._bytes}  # fmt: skip
            self._listed, self._bytes = 0, 0
            self._outcomes.clear()
            self._due = time.monotonic() + self._interval
        if message["listed"] or message["outcomes"]:
            self._send(message)


def apply_files(stats: BatchStats, message: Message) -> None:
    """Add a ``files`` message to the batch statistics."""
    stats.add_files(int(message["listed"]), dict(message["outcomes"]), int(message["bytes"]))
