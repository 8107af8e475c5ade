"""Dashboard benchmark: page times over a big PostgreSQL state store, and what an open live
page costs a running batch.

1. Pages: a throwaway database on the local PostgreSQL gets 10,000 runs (20,000 jobs) and
   1,000,000 file rows (100 jobs of 10,000 files; 1 % quarantined with validator
   messages). The dashboard runs in its own process (uvicorn); each page is fetched over
   loopback, 3 times to warm up and then ``--requests`` times. Target: the runs page and a
   job page of 10,000 files under 200 ms.
2. Live cost: an S3 -> S3 batch (moto server, ``--files`` small JSON files, SQLite state) runs
   as a child process twice without and twice with a client fetching the run page's live
   fragment every 1.5 s, as an open page does. Reported: the batch's wall and CPU time
   (``os.wait4``) and the dashboard process's CPU while it serves the page.

    .venv/bin/python benchmarks/bench_dashboard.py [--requests 30] [--files 1500]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.installed import compile_package  # noqa: E402
from module_system.demo.servers import DEMO_CREDENTIALS, MotoServer, free_port  # noqa: E402
from module_system.state import StateStore  # noqa: E402
from tests.helpers import (  # noqa: E402
    pg_database,
    write_batch,
    write_registry,
)
from tests.s3_helpers import s3_service  # noqa: E402

RUNS, BIG_JOBS, FILES_PER_JOB = 10_000, 100, 10_000
NOW = datetime.now(UTC).replace(microsecond=0)
MESSAGES = [
    {"message": "'amount' is a required property", "location": "$[3]"},
    {"message": "type: '3.x' is not a number", "location": "row 7, column 'price'"},
]
NULL = "\\N"  # COPY's NULL


# 1. pages --------------------------------------------------------------------------------
def copy_rows(conn: psycopg.Connection[Any], table: str, columns: str, rows: Iterator[str]) -> None:
    with conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        buffer = io.StringIO()
        for n, row in enumerate(rows, 1):
            buffer.write(row)
            if n % 50_000 == 0:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())


def counts(files: int, quarantined: int) -> str:
    return json.dumps({"listed": files, "fetched": files, "valid": files - quarantined,
                       "invalid": quarantined, "uploaded": files, "skipped": 0, "ignored": 0,
                       "vanished": 0, "failed": 0, "bytes": files * 2048})  # fmt: skip


def run_rows() -> Iterator[str]:
    for n in range(RUNS):
        started = NOW - timedelta(minutes=10 * n)
        status = "failed" if n % 17 == 0 else "completed"
        finished = started + timedelta(minutes=3)
        times = f"{started.isoformat()}\t{finished.isoformat()}"
        yield f"r{n:05d}\tNightly {n}\tjobs.json\t{status}\t{times}\n"


def job_rows() -> Iterator[str]:
    for n in range(RUNS):
        started = NOW - timedelta(minutes=10 * n)
        big = n < BIG_JOBS
        files = FILES_PER_JOB if big else 40
        for job, service, status in ((f"bulk_{n:05d}", "bulk_exports", "completed"),
                                     (f"api_{n:05d}", "api_weather",
                                      "failed" if n % 17 == 0 else "completed")):  # fmt: skip
            quarantined = files // 100 if job.startswith("bulk") else 0
            end = started + timedelta(seconds=150)
            yield (f"r{n:05d}\t{job}\t{service}\t{status}\t\\N\t{counts(files, quarantined)}\t"
                   f"{{}}\t{'s3' if service == 'bulk_exports' else 'api'}\t"
                   f"{started.isoformat()}\t{end.isoformat()}\n")  # fmt: skip


def file_rows() -> Iterator[str]:
    details = json.dumps({"validator": "json_schema", "messages": MESSAGES})
    for n in range(BIG_JOBS):
        for f in range(FILES_PER_JOB):
            bad = f % 100 == 7
            outcome, verdict = ("quarantined", "invalid") if bad else ("landed", "valid")
            area = "quarantine" if bad else "validated"
            key = f"exports/2026/part-{f:05d}.json"
            yield (f"r{n:05d}\tbulk_{n:05d}\tbulk_exports\t{key}\ts3://exports/{key}\t{outcome}\t"
                   f"2048\t{verdict}\tdata/s3/bulk_exports/{area}/{key}\t{'ab' * 32}\t\\N\t"
                   f"{details if bad else NULL}\t{NOW.isoformat()}\n")  # fmt: skip


def load(url: str) -> None:
    StateStore(url).close()  # creates the tables and indexes
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        copy_rows(conn, "ms_runs", "run_id, description, batch_file, status, started_at, "
                  "finished_at", run_rows())  # fmt: skip
        copy_rows(conn, "ms_jobs", "run_id, job_id, service_id, status, error, counts, retries, "
                  "source_type, started_at, finished_at", job_rows())  # fmt: skip
        copy_rows(conn, "ms_job_files", "run_id, job_id, service_id, item_key, source_uri, "
                  "outcome, size, verdict, landing_key, sha256, error, details, recorded_at",
                  file_rows())  # fmt: skip
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    print(f"loaded {RUNS:,} runs, {RUNS * 2:,} jobs, {BIG_JOBS * FILES_PER_JOB:,} file rows "
          f"in {time.perf_counter() - started:.0f} s")  # fmt: skip


@contextmanager
def dashboard_process(state_url: str, log_dir: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    command = [sys.executable, "-m", "module_system", "dashboard", "--state-url", state_url,
               "--port", str(port), "--log-dir", str(log_dir)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=log_dir)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/api/openapi.json", timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the dashboard did not start") from None
            time.sleep(0.1)
    try:
        yield url, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def time_pages(url: str, requests: int) -> list[tuple[str, float, float, float, int]]:
    job = "/runs/r00042/jobs/bulk_00042"
    pages = {
        "runs page (newest 50 of 10,000)": "/",
        "runs page 150 (offset 7,450)": "/?page=150",
        "runs filtered by service": "/?service=api_weather",
        "runs filtered by status": "/?status=failed",
        "run page": "/runs/r00042",
        "job page, 10,000 files (first 200)": job,
        "job page, quarantined only": job + "?outcome=quarantined",
        "job page, last page": job + "?page=50",
        "API: 1,000 files of the job": "/api/jobs/r00042/bulk_00042/files?per_page=1000",
        "live fragment of a run page": "/runs/r00042?fragment=1",
        "services page": "/services",
        "/metrics": "/metrics",
    }
    results = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for name, path in pages.items():
            for _ in range(3):
                client.get(path).raise_for_status()
            times = []
            for _ in range(requests):
                started = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
            times.sort()
            p95 = times[max(0, int(len(times) * 0.95) - 1)]
            results.append((name, statistics.median(times), p95, times[-1], len(response.content)))
    return results


# 2. live cost --------------------------------------------------------------------------
def batch_run(workdir: Path, registry: Path, batch: Path, state_url: str) -> tuple[float, float]:
    """Wall and CPU seconds of one ``module-system run`` child."""
    command = [sys.executable, "-m", "module_system", "run", "--batch-file", str(batch),
               "--registry", str(registry), "--state-url", state_url, "--full-refresh",
               "--monitor-duration", "0", "--log-dir", str(workdir / "logs")]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    assert os.waitstatus_to_exitcode(status) == 0, "the batch failed"
    return wall, usage.ru_utime + usage.ru_stime


def poll_live(url: str, stop: threading.Event) -> None:
    """What an open run page does: fetch its live fragment every 1.5 s."""
    run_id = None
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.wait(1.5):
            if run_id is None:  # the user opens the run's page once it is listed
                runs = client.get("/api/runs?per_page=1&status=running").json()["runs"]
                run_id = runs[0]["run_id"] if runs else None
            else:
                client.get(f"/runs/{run_id}?fragment=1").raise_for_status()


def live_cost(files: int) -> None:
    os.environ.update(DEMO_CREDENTIALS)
    with tempfile.TemporaryDirectory() as tmp, MotoServer() as moto:
        workdir = Path(tmp)
        s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
        for bucket in ("bench-source", "bench-landing"):
            s3.create_bucket(Bucket=bucket)
        body = b'{"id": 1, "day": "2026-03-01"}'
        for n in range(files):
            s3.put_object(Bucket="bench-source", Key=f"in/{n:05d}.json", Body=body)
        registry = write_registry(workdir / "registry.yaml",
                                  {"bucket": "bench-landing", "endpoint_url": moto.url},
                                  {"bulk": s3_service(moto.url, "bench-source")})  # fmt: skip
        batch = write_batch(workdir / "batch.json", [("bulk_001", "bulk")])
        state_url = f"sqlite:///{workdir / 'state.db'}"
        with dashboard_process(state_url, workdir) as (url, pid):
            dashboard = psutil.Process(pid)
            for label in ("closed", "open", "closed", "open"):
                stop = threading.Event()
                poller = threading.Thread(target=poll_live, args=(url, stop))
                before = sum(dashboard.cpu_times()[:2])
                if label == "open":
                    poller.start()
                wall, cpu = batch_run(workdir, registry, batch, state_url)
                stop.set()
                if label == "open":
                    poller.join()
                served = sum(dashboard.cpu_times()[:2]) - before
                print(f"  page {label:<6}  batch {wall:6.2f} s wall, {cpu:6.2f} s CPU "
                      f"({cpu / wall:4.0%} of a core); dashboard {served:5.2f} s CPU "
                      f"({served / wall:4.1%})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--files", type=int, default=1500)
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--skip-live", action="store_true")
    args = parser.parse_args()
    compile_package()  # the CLI child processes start as an installed copy does
    if not args.skip_pages:
        with pg_database() as url, tempfile.TemporaryDirectory() as tmp:
            load(url)
            with dashboard_process(url, Path(tmp)) as (base, _):
                print(f"{'page':<38} {'median':>8} {'p95':>8} {'max':>8} {'bytes':>9}")
                for name, median, p95, worst, size in time_pages(base, args.requests):
                    print(f"{name:<38} {median:6.1f}ms {p95:6.1f}ms {worst:6.1f}ms {size:>9,}")
    if not args.skip_live:
        print(f"live page cost, S3 -> S3 batch of {args.files:,} files (SQLite state):")
        live_cost(args.files)


if __name__ == "__main__":
    main()
