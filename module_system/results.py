"""Outcomes of files, jobs and batches: what the report, the monitor and the state store show."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    PENDING = "pending"  # queued, not started
    RUNNING = "running"  # a worker is moving its files
    COMPLETED = "completed"  # every listed file landed or was skipped as unchanged
    FAILED = "failed"  # a terminal error, or some files could not be landed
    CANCELLED = "cancelled"  # the batch was interrupted before the job finished
    TIMED_OUT = "timed_out"  # the job ran past its timeout


class FileOutcome(StrEnum):
    LANDED = "landed"  # valid: uploaded to the validated/scraped/responses area
    QUARANTINED = "quarantined"  # invalid: uploaded to quarantine with an .error.json
    SKIPPED = "skipped"  # unchanged since it last landed
    IGNORED = "ignored"  # seen but not for landing by design (e.g. a crawled non-HTML page)
    VANISHED = "vanished"  # listed, then gone before it could be fetched
    FAILED = "failed"  # could not be fetched or uploaded; the next run tries again


@dataclass
class FileCounts:
    listed: int = 0
    fetched: int = 0
    valid: int = 0
    invalid: int = 0
    uploaded: int = 0
    skipped: int = 0
    ignored: int = 0
    vanished: int = 0
    failed: int = 0
    bytes: int = 0

    def add(self, other: FileCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class JobResult:
    job_id: str
    service_id: str
    source_type: str = ""
    status: JobStatus = JobStatus.PENDING
    error: str | None = None
    counts: FileCounts = field(default_factory=FileCounts)
    retries: dict[str, int] = field(default_factory=dict)
    manifest_key: str | None = None
    log_file: str | None = None
    notes: list[str] = field(default_factory=list)  # e.g. state not recorded
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def duration(self) -> float:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["duration_seconds"] = round(self.duration, 3)
        for key in ("started_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data


@dataclass
class BatchResult:
    run_id: str
    description: str
    jobs: list[JobResult]
    started_at: datetime
    finished_at: datetime
    interrupted: bool = False

    @property
    def totals(self) -> FileCounts:
        totals = FileCounts()
        for job in self.jobs:
            totals.add(job.counts)
        return totals

    def status_counts(self) -> dict[str, int]:
        counts = {status.value: 0 for status in JobStatus}
        for job in self.jobs:
            counts[job.status.value] += 1
        return counts

    def exit_code(self, fail_on_invalid: bool = False) -> int:
        """0 when every job completed, 1 otherwise (or on invalid files, if asked)."""
        if self.interrupted or any(j.status is not JobStatus.COMPLETED for j in self.jobs):
            return 1
        if fail_on_invalid and self.totals.invalid:
            return 1
        return 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "description": self.description,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "interrupted": self.interrupted,
            "statuses": self.status_counts(),
            "totals": asdict(self.totals),
            "jobs": [job.as_dict() for job in self.jobs],
        }
