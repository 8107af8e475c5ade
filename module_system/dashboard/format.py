"""How values read on the pages: statuses as words, sizes, durations, times, a timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from module_system.orchestrator.units import human_bytes
from module_system.state.queries import JobSummary, RunSummary

STATUS_WORDS = {
    "pending": "queued",
    "timed_out": "timed out",
    "skipped": "unchanged",  # a file outcome: unchanged since it last landed
}
# Job statuses in the order the pages list them.
JOB_STATUSES = ("running", "pending", "completed", "failed", "timed_out", "cancelled")
RUN_STATUSES = ("running", "completed", "failed", "interrupted")
FILE_OUTCOMES = ("landed", "quarantined", "skipped", "ignored", "vanished", "failed", "cancelled")
# Validator message fields that say where the problem is, in the order shown.
LOCATION_FIELDS = ("location", "row", "column", "line", "record", "path", "selector")


def status_word(status: str | None) -> str:
    if not status:
        return "—"
    return STATUS_WORDS.get(status, status.replace("_", " "))


def number(value: int | float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def size(value: int | float | None) -> str:
    return "—" if value is None else human_bytes(value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def when(value: datetime | None) -> str:
    """UTC, to the second: the same on every machine that reads the page."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    if value is None:
        return ""
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{int(seconds // length)} {unit} ago"
    return "just now"


def location(message: dict[str, Any]) -> str:
    """Where a validator message points: row and column, JSON path, selector."""
    parts = []
    for name in LOCATION_FIELDS:
        value = message.get(name)
        if value not in (None, "") and str(value) not in parts:
            parts.append(str(value) if name in ("location", "path") else f"{name} {value}")
    return ", ".join(parts)


@dataclass(frozen=True)
class TimelineBar:
    job: JobSummary
    left: float  # percent of the run's span
    width: float


def timeline(run: RunSummary, jobs: list[JobSummary]) -> list[TimelineBar]:
    """Each started job as a bar across the run's span (running ones reach "now")."""
    start = run.started_at
    end = run.finished_at or datetime.now(UTC)
    ends = [j.finished_at or datetime.now(UTC) for j in jobs if j.started_at]
    end = max([end, *ends])
    span = max((end - start).total_seconds(), 0.001)
    bars = []
    for job in jobs:
        if job.started_at is None:
            continue
        left = (job.started_at - start).total_seconds() / span * 100
        right = ((job.finished_at or end) - start).total_seconds() / span * 100
        left = min(max(left, 0.0), 99.5)
        bars.append(TimelineBar(job, round(left, 2), round(max(right - left, 0.5), 2)))
    return bars


def query(values: dict[str, Any], **more: Any) -> str:
    """A query string of the values that are set (for filter and pager links)."""
    merged = {**values, **more}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})


def in_status_order(by_status: dict[str, int]) -> list[tuple[str, int]]:
    known = [(s, by_status[s]) for s in JOB_STATUSES if by_status.get(s)]
    return known + sorted((s, n) for s, n in by_status.items() if s not in JOB_STATUSES and n)


FILTERS = {
    "query": query,
    "in_status_order": in_status_order,
    "status_word": status_word,
    "number": number,
    "size": size,
    "duration": duration,
    "when": when,
    "ago": ago,
    "location": location,
}
