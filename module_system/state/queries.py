"""Read-side queries for the dashboard, the metrics and re-runs (writes live in store.py).

Every function takes an :class:`~sqlalchemy.Engine` (``StateStore.engine``) and returns
plain dataclasses: the dashboard renders them, its JSON API serialises them, and their
JSON Schema is the API's OpenAPI description. Lists are paged in SQL, so a runs page
or a job of 10,000 files costs one page of rows, whatever the store holds.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Engine, Float, case, column, func, select, true

from module_system.errors import ConfigError
from module_system.observability.metric_values import (
    DURATION_BUCKETS,
    OUTCOME_COUNTS,
    DurationStats,
    MetricsSnapshot,
)
from module_system.state import schema

RERUN_PREFIX = "rerun-failed:"  # batch_file of a run made by --rerun-failed RUN_ID
RERUNNABLE = ("failed", "timed_out", "cancelled")
MAX_PER_PAGE = 1000

# A job's counts (ms_jobs.counts) under the words the dashboard shows.
TALLY_FROM_COUNTS = {
    "landed": "valid",
    "quarantined": "invalid",
    "unchanged": "skipped",
    "ignored": "ignored",
    "vanished": "vanished",
    "failed": "failed",
    "bytes": "bytes",
}


@dataclass
class FileTally:
    """Files by outcome (and bytes landed) of a job or a run."""

    landed: int = 0
    quarantined: int = 0
    unchanged: int = 0
    ignored: int = 0
    vanished: int = 0
    failed: int = 0
    bytes: int = 0

    @classmethod
    def from_counts(cls, counts: dict[str, Any] | None) -> FileTally:
        counts = counts or {}
        return cls(**{k: int(counts.get(v) or 0) for k, v in TALLY_FROM_COUNTS.items()})

    def add(self, other: FileTally) -> None:
        for name in TALLY_FROM_COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class RunSummary:
    run_id: str
    description: str
    batch_file: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    duration_seconds: float
    jobs_by_status: dict[str, int] = field(default_factory=dict)
    files: FileTally = field(default_factory=FileTally)
    rerun_of: str | None = None  # the run whose failed jobs this run ran again


@dataclass
class RunPage:
    runs: list[RunSummary]
    total: int
    page: int
    per_page: int
    pages: int


@dataclass
class JobSummary:
    run_id: str
    job_id: str
    service_id: str
    source_type: str | None
    status: str
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    counts: dict[str, int]
    files: FileTally
    retries: dict[str, int]
    manifest_key: str | None


@dataclass
class RunDetail:
    run: RunSummary
    jobs: list[JobSummary]
    reruns: list[str]  # runs that re-ran this run's failed jobs, newest first


@dataclass
class FileEntry:
    id: int
    item_key: str
    source_uri: str
    outcome: str
    size: int | None
    verdict: str | None
    landing_key: str | None
    sha256: str | None
    error: str | None
    messages: list[dict[str, Any]]  # a quarantined file's validator messages
    details: dict[str, Any]
    recorded_at: datetime


@dataclass
class FilePage:
    run_id: str
    job_id: str
    outcome: str | None
    files: list[FileEntry]
    total: int
    page: int
    per_page: int
    pages: int
    by_outcome: dict[str, int]


@dataclass
class ServiceSummary:
    service_id: str
    source_type: str | None
    description: str = ""
    last_run_id: str | None = None
    last_job_id: str | None = None
    last_status: str | None = None
    last_started_at: datetime | None = None
    last_success_at: datetime | None = None
    consecutive_failures: int = 0
    files_known: int = 0
    cursors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PruneResult:
    runs: int
    jobs: int
    files: int


# runs ----------------------------------------------------------------------------------
def list_runs(
    engine: Engine,
    *,
    status: str | None = None,
    service: str | None = None,
    page: int = 1,
    per_page: int = 50,
) -> RunPage:
    """Runs newest first, one page of them, optionally of one status or one service."""
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    runs, jobs = schema.runs, schema.jobs
    where = []
    if status:
        where.append(runs.c.status == status)
    if service:
        where.append(runs.c.run_id.in_(select(jobs.c.run_id).where(jobs.c.service_id == service)))
    query = (
        select(runs)
        .where(*where)
        .order_by(runs.c.started_at.desc(), runs.c.run_id.desc())
        .limit(per_page)
        .offset((max(page, 1) - 1) * per_page)
    )
    with engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(runs).where(*where)) or 0
        rows = conn.execute(query).mappings().all()
        summaries = _summarise_runs(conn, rows)
    return RunPage(summaries, total, page, per_page, max(1, math.ceil(total / per_page)))


def _summarise_runs(conn: Any, rows: Sequence[Any]) -> list[RunSummary]:
    jobs = schema.jobs
    ids = [r["run_id"] for r in rows]
    by_status: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    tallies: dict[str, FileTally] = defaultdict(FileTally)
    if ids:
        query = select(jobs.c.run_id, jobs.c.status, jobs.c.counts).where(jobs.c.run_id.in_(ids))
        for run_id, job_status, counts in conn.execute(query):
            by_status[run_id][job_status] += 1
            tallies[run_id].add(FileTally.from_counts(counts))
    return [_run_summary(r, dict(by_status[r["run_id"]]), tallies[r["run_id"]]) for r in rows]


def _run_summary(row: Any, by_status: dict[str, int], tally: FileTally) -> RunSummary:
    started, finished = _utc(row["started_at"]), _utc(row["finished_at"])
    batch_file = row["batch_file"] or ""
    rerun_of = (
        batch_file.removeprefix(RERUN_PREFIX) if batch_file.startswith(RERUN_PREFIX) else None
    )
    return RunSummary(
        run_id=row["run_id"],
        description=row["description"] or "",
        batch_file=batch_file,
        status=row["status"],
        started_at=started or datetime.now(UTC),
        finished_at=finished,
        duration_seconds=_duration(started, finished) or 0.0,
        jobs_by_status=by_status,
        files=tally,
        rerun_of=rerun_of,
    )


def run_detail(engine: Engine, run_id: str) -> RunDetail | None:
    """One run and all its jobs (None when there is no such run)."""
    runs, jobs = schema.runs, schema.jobs
    with engine.connect() as conn:
        row = conn.execute(select(runs).where(runs.c.run_id == run_id)).mappings().first()
        if row is None:
            return None
        job_rows = conn.execute(select(jobs).where(jobs.c.run_id == run_id)).mappings().all()
        reruns = conn.scalars(
            select(runs.c.run_id)
            .where(runs.c.batch_file == RERUN_PREFIX + run_id)
            .order_by(runs.c.started_at.desc())
        ).all()
    job_list = sorted((_job_summary(j) for j in job_rows), key=_job_order)
    tally = FileTally()
    by_status: dict[str, int] = defaultdict(int)
    for job in job_list:
        tally.add(job.files)
        by_status[job.status] += 1
    return RunDetail(_run_summary(row, dict(by_status), tally), job_list, list(reruns))


def _job_order(job: JobSummary) -> tuple[bool, datetime, str]:
    # Started jobs in the order they started, then the ones still queued.
    return (job.started_at is None, job.started_at or datetime.max.replace(tzinfo=UTC), job.job_id)


def job_detail(engine: Engine, run_id: str, job_id: str) -> JobSummary | None:
    jobs = schema.jobs
    query = select(jobs).where(jobs.c.run_id == run_id, jobs.c.job_id == job_id)
    with engine.connect() as conn:
        row = conn.execute(query).mappings().first()
    return _job_summary(row) if row is not None else None


def _job_summary(row: Any) -> JobSummary:
    started, finished = _utc(row["started_at"]), _utc(row["finished_at"])
    counts = {k: int(v or 0) for k, v in (row["counts"] or {}).items()}
    return JobSummary(
        run_id=row["run_id"],
        job_id=row["job_id"],
        service_id=row["service_id"],
        source_type=row["source_type"],
        status=row["status"],
        error=row["error"],
        started_at=started,
        finished_at=finished,
        duration_seconds=_duration(started, finished),
        counts=counts,
        files=FileTally.from_counts(counts),
        retries={k: int(v) for k, v in (row["retries"] or {}).items()},
        manifest_key=row["manifest_key"],
    )


def rerunnable_jobs(engine: Engine, run_id: str) -> list[tuple[str, str]] | None:
    """(job_id, service_id) of the failed, timed-out and cancelled jobs of a run, in the
    order they started; None when there is no such run."""
    detail = run_detail(engine, run_id)
    if detail is None:
        return None
    return [(j.job_id, j.service_id) for j in detail.jobs if j.status in RERUNNABLE]


# files of a job ------------------------------------------------------------------------
def job_files(
    engine: Engine,
    run_id: str,
    job_id: str,
    *,
    outcome: str | None = None,
    page: int = 1,
    per_page: int = 200,
) -> FilePage:
    """One page of a job's files (in the order they were recorded) and its outcome counts."""
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    table = schema.job_files
    of_job = [table.c.run_id == run_id, table.c.job_id == job_id]
    where = [*of_job, table.c.outcome == outcome] if outcome else of_job
    # Sort only the ids, then fetch the page's rows: sorting a big job's whole rows (their
    # validator messages included) spills to disk; its ids take a few hundred KB.
    page_ids = (
        select(table.c.id)
        .where(*where)
        .order_by(table.c.id)
        .limit(per_page)
        .offset((max(page, 1) - 1) * per_page)
    )
    query = select(table).where(table.c.id.in_(page_ids.scalar_subquery())).order_by(table.c.id)
    counts_query = select(table.c.outcome, func.count()).where(*of_job).group_by(table.c.outcome)
    with engine.connect() as conn:
        by_outcome = {name: int(n) for name, n in conn.execute(counts_query)}
        files = [_file_entry(r) for r in conn.execute(query).mappings()]
    total = by_outcome.get(outcome, 0) if outcome else sum(by_outcome.values())
    pages = max(1, math.ceil(total / per_page))
    return FilePage(run_id, job_id, outcome, files, total, page, per_page, pages, by_outcome)


def _file_entry(row: Any) -> FileEntry:
    details = row["details"] if isinstance(row["details"], dict) else {}
    messages = details.get("messages") or []
    return FileEntry(
        id=int(row["id"]),
        item_key=row["item_key"],
        source_uri=row["source_uri"],
        outcome=row["outcome"],
        size=row["size"],
        verdict=row["verdict"],
        landing_key=row["landing_key"],
        sha256=row["sha256"],
        error=row["error"],
        messages=[m if isinstance(m, dict) else {"message": str(m)} for m in messages],
        details={k: v for k, v in details.items() if k != "messages"},
        recorded_at=_utc(row["recorded_at"]) or datetime.now(UTC),
    )


# services ------------------------------------------------------------------------------
def services_summary(
    engine: Engine, registry: dict[str, tuple[str, str]] | None = None
) -> list[ServiceSummary]:
    """Every service of the registry (id -> (type, description)) and every service the
    store has seen: last run, last success, failures since then, incremental state."""
    registry = registry or {}
    with engine.connect() as conn:
        summaries = {sid: ServiceSummary(sid, kind, text) for sid, (kind, text) in registry.items()}
        for row in _last_jobs(conn):
            summary = summaries.setdefault(row.service_id, ServiceSummary(row.service_id, None))
            summary.source_type = summary.source_type or row.source_type
            summary.last_run_id, summary.last_job_id = row.run_id, row.job_id
            summary.last_status, summary.last_started_at = row.status, _utc(row.started_at)
        for service_id, last_ok, failures in _success_and_failures(conn):
            if service_id in summaries:
                summaries[service_id].last_success_at = _utc(last_ok)
                summaries[service_id].consecutive_failures = int(failures)
        files, cursors = schema.files, schema.cursors
        known = select(files.c.service_id, func.count()).group_by(files.c.service_id)
        for service_id, count in conn.execute(known):
            if service_id in summaries:
                summaries[service_id].files_known = int(count)
        for service_id, name, value in conn.execute(
            select(cursors.c.service_id, cursors.c.name, cursors.c.value)
        ):
            if service_id in summaries:
                summaries[service_id].cursors[name] = value
    return sorted(summaries.values(), key=lambda s: s.service_id)


def _last_jobs(conn: Any) -> Iterable[Any]:
    jobs = schema.jobs
    newest = (
        func.row_number()
        .over(partition_by=jobs.c.service_id, order_by=jobs.c.started_at.desc().nulls_last())
        .label("n")
    )
    ranked = select(jobs.c.service_id, jobs.c.run_id, jobs.c.job_id, jobs.c.status,
                    jobs.c.source_type, jobs.c.started_at, newest).subquery()  # fmt: skip
    return conn.execute(select(ranked).where(ranked.c.n == 1)).all()


def _success_and_failures(conn: Any) -> Iterable[tuple[str, Any, int]]:
    """Per service: when its last job completed, and how many jobs failed or timed out
    since (or ever, when none completed)."""
    jobs = schema.jobs
    last_ok = (
        select(jobs.c.service_id, func.max(jobs.c.finished_at).label("ok"))
        .where(jobs.c.status == "completed")
        .group_by(jobs.c.service_id)
        .subquery()
    )
    failed = jobs.c.status.in_(("failed", "timed_out"))
    after = (last_ok.c.ok.is_(None)) | (jobs.c.started_at > last_ok.c.ok)
    failures = func.sum(case((failed & after, 1), else_=0))
    query = (
        select(jobs.c.service_id, func.max(last_ok.c.ok), func.coalesce(failures, 0))
        .select_from(jobs.outerjoin(last_ok, last_ok.c.service_id == jobs.c.service_id))
        .group_by(jobs.c.service_id)
    )
    return conn.execute(query).all()


def known_services(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(select(schema.jobs.c.service_id).distinct()))


# metrics -------------------------------------------------------------------------------
def metrics_snapshot(engine: Engine) -> MetricsSnapshot:
    """What the Prometheus metrics show, in a few aggregate queries."""
    jobs, runs = schema.jobs, schema.runs
    snap = MetricsSnapshot()
    completed = jobs.c.status == "completed"
    with engine.connect() as conn:
        for service_id, source_type, nbytes, *sums in conn.execute(_count_sums(conn)):
            for outcome, value in zip(OUTCOME_COUNTS, sums, strict=True):
                key = (service_id, source_type or "", outcome)
                snap.files[key] = snap.files.get(key, 0) + int(value or 0)
            snap.bytes[service_id] = snap.bytes.get(service_id, 0) + int(nbytes or 0)
        count_jobs = select(jobs.c.service_id, jobs.c.status, func.count())
        by_status = count_jobs.group_by(jobs.c.service_id, jobs.c.status)
        for service_id, status, n in conn.execute(by_status):
            snap.jobs[(service_id, status)] = int(n)
        last_ok = select(jobs.c.service_id, func.max(jobs.c.finished_at)).where(completed)
        for service_id, when in conn.execute(last_ok.group_by(jobs.c.service_id)):
            if when is not None:
                snap.last_success[service_id] = when.replace(tzinfo=when.tzinfo or UTC).timestamp()
        for status, n in conn.execute(select(runs.c.status, func.count()).group_by(runs.c.status)):
            snap.runs[status] = int(n)
        snap.durations = _duration_stats(conn)
    return snap


def _count_sums(conn: Any) -> Any:
    """Per service and source type: bytes, then each outcome's files, summed over jobs.
    PostgreSQL parses a ``json`` value again for each ``->>``; ``json_to_record`` parses
    each job's counts once (2-3 times faster over many jobs); it fails on anything but an
    object, so a JSON ``null`` is passed as SQL NULL."""
    jobs = schema.jobs
    keys = ["bytes", *OUTCOME_COUNTS.values()]
    if conn.dialect.name == "postgresql":
        record = (
            func.json_to_record(case((func.json_typeof(jobs.c.counts) == "object", jobs.c.counts)))
            .table_valued(*(column(k, Float if k == "bytes" else BigInteger) for k in keys))
            .render_derived(name="c", with_types=True)
        )
        values = [record.c[k] for k in keys]
        source: Any = jobs.outerjoin(record, true())
    else:
        values = [jobs.c.counts[k].as_float() if k == "bytes" else jobs.c.counts[k].as_integer()
                  for k in keys]  # fmt: skip
        source = jobs
    return (
        select(jobs.c.service_id, jobs.c.source_type, *(func.sum(v) for v in values))
        .select_from(source)
        .group_by(jobs.c.service_id, jobs.c.source_type)
    )


def _duration_stats(conn: Any) -> dict[str, DurationStats]:
    jobs = schema.jobs
    if conn.dialect.name == "sqlite":
        seconds = (func.julianday(jobs.c.finished_at) - func.julianday(jobs.c.started_at)) * 86400
    else:
        seconds = func.extract("epoch", jobs.c.finished_at - jobs.c.started_at)
    per_bucket = [func.sum(case((seconds <= bound, 1), else_=0)) for bound in DURATION_BUCKETS]
    query = (
        select(jobs.c.service_id, func.count(), func.sum(seconds), *per_bucket)
        .where(jobs.c.started_at.is_not(None), jobs.c.finished_at.is_not(None))
        .group_by(jobs.c.service_id)
    )
    return {
        service_id: DurationStats([int(b or 0) for b in buckets], float(total or 0), int(count))
        for service_id, count, total, *buckets in conn.execute(query)
    }


# retention ---------------------------------------------------------------------------
AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> timedelta:
    """``90d``, ``12h``, ``2w``, ``30m``, ``45s`` as a timedelta (ConfigError otherwise)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw])\s*", text.lower())
    if not match:
        raise ConfigError(f"--older-than {text!r}: use a number and a unit, e.g. 90d, 12h, 2w")
    return timedelta(seconds=int(match.group(1)) * AGE_UNITS[match.group(2)])


def prune_runs(engine: Engine, before: datetime, *, dry_run: bool = False) -> PruneResult:
    """Delete runs that started before ``before`` (and are not running), with their jobs
    and file records. What landed (``ms_files``) stays: it makes the next run incremental."""
    runs, jobs, files = schema.runs, schema.jobs, schema.job_files
    old = select(runs.c.run_id).where(runs.c.started_at < before, runs.c.status != "running")
    totals = [0, 0, 0]
    with engine.connect() as conn:
        run_ids = list(conn.scalars(old))
    for start in range(0, len(run_ids), 500):  # short transactions: runs keep writing
        chunk = run_ids[start : start + 500]
        with engine.begin() as conn:
            for n, table in enumerate((runs, jobs, files)):
                if dry_run:
                    count = select(func.count()).select_from(table)
                    totals[n] += conn.scalar(count.where(table.c.run_id.in_(chunk))) or 0
                else:
                    totals[n] += conn.execute(
                        table.delete().where(table.c.run_id.in_(chunk))
                    ).rowcount
    return PruneResult(*totals)


# helpers -------------------------------------------------------------------------------
def _utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything this package writes is UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _duration(started: datetime | None, finished: datetime | None) -> float | None:
    if started is None:
        return None
    return max(0.0, ((finished or datetime.now(UTC)) - started).total_seconds())
