"""A job's log lines, read from its log file (``{job_id}_{service_id}_{type}_module.log``).

A job's file gathers the lines of every run of that job id, so only the lines written
while this run of the job went are shown; and only the end of a big file is read.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import orjson

from module_system.state.queries import JobSummary

TAIL_BYTES = 2 * 1024 * 1024
MAX_LINES = 500
SLACK = timedelta(seconds=2)  # log times and the store's times come from different calls


@dataclass(frozen=True)
class LogLine:
    ts: str
    level: str
    message: str


@dataclass(frozen=True)
class JobLog:
    path: Path
    lines: list[LogLine]
    truncated: bool  # more lines than shown


def job_log(log_dir: Path | None, job: JobSummary) -> JobLog | None:
    """The job's lines for this run, or None when the log dir has no file for it."""
    path = _log_path(log_dir, job) if log_dir is not None else None
    if path is None or job.started_at is None:
        return None
    try:
        text = _tail(path)
    except OSError:
        return None
    start = job.started_at - SLACK
    end = job.finished_at + SLACK if job.finished_at else None
    lines = [line for line in _parse(text) if _within(line.ts, start, end)]
    return JobLog(path, lines[-MAX_LINES:], len(lines) > MAX_LINES)


def _log_path(log_dir: Path, job: JobSummary) -> Path | None:
    root = log_dir.resolve()
    if job.source_type:
        candidates = [root / f"{job.job_id}_{job.service_id}_{job.source_type}_module.log"]
    else:  # stores from before source types were recorded
        pattern = f"{glob.escape(job.job_id)}_{glob.escape(job.service_id)}_*_module.log"
        candidates = sorted(root.glob(pattern))
    for path in candidates:
        # Ids come from the store: never follow one out of the log dir.
        if path.resolve().parent == root and path.is_file():
            return path
    return None


def _tail(path: Path) -> str:
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        length = handle.tell()
        handle.seek(max(0, length - TAIL_BYTES))
        data = handle.read()
    if length > TAIL_BYTES:
        data = data.split(b"\n", 1)[-1]  # drop the partial first line
    return data.decode("utf-8", errors="replace")


def _parse(text: str) -> list[LogLine]:
    lines = []
    for raw in text.splitlines():
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(entry, dict) and "ts" in entry:
            lines.append(LogLine(str(entry["ts"]), str(entry.get("level", "")),
                                 str(entry.get("message", ""))))  # fmt: skip
    return lines


def _within(ts: str, start: datetime, end: datetime | None) -> bool:
    try:
        moment = datetime.fromisoformat(ts)
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=start.tzinfo)
    return moment >= start and (end is None or moment <= end)
