"""The job's writes to the state store: landed files (what makes runs incremental) and
every file's outcome (what the dashboard shows), buffered and written in batches.

One transaction per file would make the state store the bottleneck of a job of many small
files. A flush that fails is retried; if the store stays down, the files that did land
stay reported as landed, with a note that their state was not recorded: the next run
lands them again, to the same keys.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from module_system.landing.manifest import ManifestEntry
from module_system.observability.redaction import redact
from module_system.results import FileOutcome
from module_system.state.store import FileRecord, StateStore

log = logging.getLogger("module_system.pipeline")
RECORD_BATCH = 200  # files written to the state store per transaction
RECORD_FLUSH_SECONDS = 2.0  # ... or at least this often
T = TypeVar("T")
FLUSH_ATTEMPTS = 4
FLUSH_BACKOFF = 0.5  # seconds, doubled per attempt
MAX_MESSAGES = 50  # validator messages kept per file in the state store (the S3 report has all)
# Unchanged files are recorded one by one up to this many per job, then only counted: a
# service of a million files run hourly must not add a million rows an hour.
UNCHANGED_ROWS_PER_JOB = 10_000


class RecordWriter:
    def __init__(self, state: StateStore, service_id: str, run_id: str, job_id: str) -> None:
        self.state, self.service_id, self.run_id, self.job_id = state, service_id, run_id, job_id
        self.unrecorded = 0  # files whose state could not be written
        self.unchanged_seen = 0
        self._landed: list[FileRecord] = []
        self._outcomes: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one flush at a time keeps batches in order
        self._flush_due = time.monotonic() + RECORD_FLUSH_SECONDS

    def add(self, entry: ManifestEntry, landed: FileRecord | None = None) -> bool:
        """Buffer one file's outcome (and its landed record); True when a flush is due."""
        row = _outcome_row(entry, self.run_id, self.job_id)
        with self._lock:
            if entry.outcome is FileOutcome.SKIPPED:
                self.unchanged_seen += 1
            if (
                self.unchanged_seen <= UNCHANGED_ROWS_PER_JOB
                or entry.outcome is not FileOutcome.SKIPPED
            ):
                self._outcomes.append(row)
            if landed is not None:
                self._landed.append(landed)
            pending = len(self._outcomes) + len(self._landed)
            return pending >= RECORD_BATCH or time.monotonic() > self._flush_due

    def flush(self, cancel: threading.Event | None = None) -> None:
        with self._flush_lock:
            with self._lock:
                landed, self._landed = self._landed, []
                outcomes, self._outcomes = self._outcomes, []
                self._flush_due = time.monotonic() + RECORD_FLUSH_SECONDS
            if outcomes or landed:
                self._write(landed, outcomes, cancel or threading.Event())

    def _write(
        self, landed: list[FileRecord], outcomes: list[dict[str, Any]], cancel: threading.Event
    ) -> None:
        def write() -> bool:
            self.state.record_files(self.service_id, landed, outcomes)
            return True

        if store_retried(write, cancel, "write") is None:
            self.unrecorded += len(landed)
            log.error(
                "state store unavailable: %d landed files not recorded; the next run lands "
                "them again, to the same keys", len(landed),
            )  # fmt: skip


def store_retried(call: Callable[[], T], cancel: threading.Event, what: str) -> T | None:
    """``call`` (a state store ``what``: read or write), retried with backoff while the
    store fails; None when it is still down after :data:`FLUSH_ATTEMPTS` (or on cancel)."""
    for attempt in range(1, FLUSH_ATTEMPTS + 1):
        try:
            return call()
        except Exception as exc:  # the store's driver errors are many; all are retried
            error = redact(str(exc)).splitlines()[0] if str(exc) else repr(exc)
            last = attempt == FLUSH_ATTEMPTS or cancel.wait(FLUSH_BACKOFF * 2 ** (attempt - 1))
            log.log(logging.ERROR if last else logging.WARNING,
                    "state store %s failed (attempt %d): %s", what, attempt, error)  # fmt: skip
            if last:
                return None
    return None


def _outcome_row(entry: ManifestEntry, run_id: str, job_id: str) -> dict[str, Any]:
    details = dict(entry.details or {})
    if entry.note:
        details["note"] = entry.note
    messages = details.get("messages")
    if isinstance(messages, list) and len(messages) > MAX_MESSAGES:
        details["messages"] = messages[:MAX_MESSAGES]
        details["messages_truncated"] = len(messages)
    return {
        "run_id": run_id, "job_id": job_id, "item_key": entry.key,
        "source_uri": entry.source_uri, "outcome": entry.outcome.value, "size": entry.size,
        "verdict": entry.verdict, "landing_key": entry.landing_key, "sha256": entry.sha256,
        "error": entry.error, "details": details or None,
    }  # fmt: skip
