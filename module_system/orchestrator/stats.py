"""Thread-safe live statistics of a batch: jobs by state, files and bytes with rates."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from module_system.results import FileOutcome, JobStatus

_FILE_KEYS = {
    FileOutcome.LANDED: "landed",
    FileOutcome.QUARANTINED: "quarantined",
    FileOutcome.SKIPPED: "skipped",
    FileOutcome.IGNORED: "ignored",
    FileOutcome.VANISHED: "vanished",
}


@dataclass(frozen=True)
class StatsSnapshot:
    submitted: int
    queued: int
    running: int
    completed: int
    failed: int
    cancelled: int
    files_listed: int
    files_done: int
    files_landed: int
    files_quarantined: int
    files_skipped: int
    files_failed: int
    bytes: int
    elapsed: float

    @property
    def files_per_second(self) -> float:
        return self.files_done / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def bytes_per_second(self) -> float:
        return self.bytes / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def finished(self) -> int:
        return self.completed + self.failed + self.cancelled


class BatchStats:
    """Counters updated by the executor (jobs) and the pipeline (files)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._jobs = dict.fromkeys(("submitted", "running", "completed", "failed", "cancelled"), 0)
        self._files = dict.fromkeys(
            ("listed", "done", "landed", "quarantined", "skipped", "ignored", "vanished", "failed"),
            0,
        )
        self._bytes = 0

    def job_submitted(self) -> None:
        with self._lock:
            self._jobs["submitted"] += 1

    def job_started(self) -> None:
        with self._lock:
            self._jobs["running"] += 1

    def job_finished(self, status: JobStatus, started: bool = True) -> None:
        key = {
            JobStatus.COMPLETED: "completed",
            JobStatus.CANCELLED: "cancelled",
        }.get(status, "failed")
        with self._lock:
            if started:
                self._jobs["running"] -= 1
            self._jobs[key] += 1

    # the pipeline's Progress protocol
    def file_listed(self) -> None:
        with self._lock:
            self._files["listed"] += 1

    def file_finished(self, outcome: FileOutcome, nbytes: int) -> None:
        key = _FILE_KEYS.get(outcome, "failed")
        with self._lock:
            self._files["done"] += 1
            self._files[key] += 1
            self._bytes += nbytes

    def add_files(self, listed: int, outcomes: dict[str, int], nbytes: int) -> None:
        """Counts gathered elsewhere (a Dask worker's progress events); ``outcomes`` maps
        :class:`FileOutcome` values to numbers of files."""
        with self._lock:
            self._files["listed"] += listed
            for outcome, count in outcomes.items():
                self._files["done"] += count
                self._files[_FILE_KEYS.get(FileOutcome(outcome), "failed")] += count
            self._bytes += nbytes

    def snapshot(self) -> StatsSnapshot:
        with self._lock:
            jobs, files = dict(self._jobs), dict(self._files)
            nbytes = self._bytes
        finished = jobs["completed"] + jobs["failed"] + jobs["cancelled"]
        return StatsSnapshot(
            submitted=jobs["submitted"],
            queued=jobs["submitted"] - jobs["running"] - finished,
            running=jobs["running"],
            completed=jobs["completed"],
            failed=jobs["failed"],
            cancelled=jobs["cancelled"],
            files_listed=files["listed"],
            files_done=files["done"],
            files_landed=files["landed"],
            files_quarantined=files["quarantined"],
            files_skipped=files["skipped"],
            files_failed=files["failed"],
            bytes=nbytes,
            elapsed=time.monotonic() - self._start,
        )
