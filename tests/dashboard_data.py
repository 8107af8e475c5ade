"""Rows for dashboard tests: runs, jobs and per-file records written straight into the
state store's tables, with chosen timestamps, so a page can be checked against known data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from module_system.state import StateStore, schema

T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
QUARANTINE_MESSAGES = [
    {"message": "'amount' is a required property", "path": "$[2]", "location": "$[2]"},
    {"message": "type is 'string', expected 'number'", "row": 7, "column": "price"},
]


@dataclass
class FileSeed:
    key: str
    outcome: str = "landed"
    size: int = 100
    error: str | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class JobSeed:
    job_id: str
    service_id: str
    status: str = "completed"
    files: list[FileSeed] = field(default_factory=list)
    error: str | None = None
    retries: dict[str, int] = field(default_factory=dict)
    seconds: float = 12.0
    source_type: str = "s3"


def counts_of(files: list[FileSeed]) -> dict[str, int]:
    counts = dict.fromkeys(
        ("listed", "fetched", "valid", "invalid", "uploaded", "skipped", "ignored",
         "vanished", "failed", "bytes"), 0,
    )  # fmt: skip
    names = {"landed": "valid", "quarantined": "invalid"}
    for f in files:
        counts["listed"] += 1
        counts[names.get(f.outcome, f.outcome)] += 1
        if f.outcome in ("landed", "quarantined"):
            counts["uploaded"] += 1
            counts["bytes"] += f.size
    return counts


def seed_run(
    store: StateStore,
    run_id: str,
    jobs: list[JobSeed],
    *,
    started: datetime = T0,
    status: str = "completed",
    description: str = "Nightly",
    batch_file: str = "jobs.json",
) -> None:
    """One run with its jobs and their files."""
    finished = None if status == "running" else started + timedelta(minutes=5)
    with store.engine.begin() as conn:
        conn.execute(schema.runs.insert().values(
            run_id=run_id, description=description, batch_file=batch_file, status=status,
            started_at=started, finished_at=finished,
        ))  # fmt: skip
        for n, job in enumerate(jobs):
            conn.execute(schema.jobs.insert().values(**_job_row(run_id, job, started, n)))
            rows = [_file_row(run_id, job, f, started) for f in job.files]
            if rows:
                conn.execute(schema.job_files.insert(), rows)


def _job_row(run_id: str, job: JobSeed, started: datetime, n: int) -> dict[str, Any]:
    began = None if job.status == "pending" else started + timedelta(seconds=10 * n)
    ended = began + timedelta(seconds=job.seconds) if began and job.status != "running" else None
    return {
        "run_id": run_id, "job_id": job.job_id, "service_id": job.service_id,
        "status": job.status, "error": job.error, "counts": counts_of(job.files),
        "retries": job.retries, "source_type": job.source_type,
        "manifest_key": f"data/s3/{job.service_id}/_manifests/{job.job_id}.json",
        "started_at": began, "finished_at": ended,
    }  # fmt: skip


def _file_row(run_id: str, job: JobSeed, f: FileSeed, started: datetime) -> dict[str, Any]:
    area = "quarantine" if f.outcome == "quarantined" else "validated"
    landed = f.outcome in ("landed", "quarantined", "skipped")
    return {
        "run_id": run_id, "job_id": job.job_id, "service_id": job.service_id,
        "item_key": f.key, "source_uri": f"s3://source/{f.key}", "outcome": f.outcome,
        "size": f.size, "verdict": {"landed": "valid", "quarantined": "invalid"}.get(f.outcome),
        "landing_key": f"data/s3/{job.service_id}/{area}/{f.key}" if landed else None,
        "sha256": "ab" * 32 if landed else None, "error": f.error,
        "details": {"messages": f.messages} if f.messages else None, "recorded_at": started,
    }  # fmt: skip


def sample_runs(store: StateStore) -> None:
    """Three runs: a completed one, one with a failed and a cancelled job, one running."""
    files = [FileSeed(f"daily/{n:03d}.json", size=1000 + n) for n in range(5)]
    files += [FileSeed("daily/bad.json", "quarantined", 321, messages=QUARANTINE_MESSAGES),
              FileSeed("daily/old.json", "skipped", 50)]  # fmt: skip
    seed_run(store, "run-a", [JobSeed("fin_001", "s3_financial_data", files=files),
                              JobSeed("web_001", "web_news", source_type="web",
                                      files=[FileSeed("index.html")])])  # fmt: skip
    seed_run(store, "run-b", [
        JobSeed("fin_002", "s3_financial_data", files=files[:2]),
        JobSeed("ftp_002", "ftp_reports", "failed", source_type="ftp",
                files=[FileSeed("r.csv", "failed", error="ftp_421: too many connections")],
                error="1 of 1 files failed; first: ftp_421: too many connections",
                retries={"ftp_421": 4, "connection_lost": 1}),
        JobSeed("api_002", "api_weather", "cancelled", source_type="api",
                error="not started: batch interrupted"),
    ], started=T0 + timedelta(days=1), status="failed", description="Nightly 2")  # fmt: skip
    seed_run(store, "run-c", [JobSeed("fin_003", "s3_financial_data", "running", files=files[:3]),
                              JobSeed("api_003", "api_weather", "pending", source_type="api")],
             started=T0 + timedelta(days=2), status="running", description="Nightly 3")  # fmt: skip
