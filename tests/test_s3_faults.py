"""S3 errors for some requests: retried, nothing lost, nothing landed twice."""

from __future__ import annotations

import json
from typing import Any

from module_system.demo.servers import MotoServer
from module_system.results import JobStatus
from tests.faulty_proxy import faulty_proxy
from tests.helpers import RunJobs, list_keys, read_json
from tests.s3_helpers import s3_service

ROOT = "data/s3/svc/"
N = 12


def seed(s3: Any, bucket: str) -> None:
    for n in range(N):
        s3.put_object(Bucket=bucket, Key=f"in/{n:02d}.json",
                      Body=json.dumps({"id": n, "day": "2026-05-05"}).encode())  # fmt: skip


def test_intermittent_503_and_dropped_connections_are_retried(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    landing: dict[str, Any],
) -> None:  # fmt: skip
    seed(s3, source_bucket)

    def every_third(method: str, path: str, n: int) -> str | None:
        if n % 3 == 0:
            return "drop" if n % 2 else "503"
        return None

    with faulty_proxy(s3_server.url, every_third) as proxy:
        retry = {"attempts": 6, "backoff": 0.01, "max_backoff": 0.05}
        proxied = {**landing, "endpoint_url": proxy.url, "retry": retry}
        services = {"svc": s3_service(proxy.url, source_bucket)}
        job = run_jobs(services, [("j", "svc")], landing=proxied).jobs[0]
    assert proxy.faults >= 5
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.counts.valid == N and job.counts.failed == 0
    keys = list_keys(s3, landing_bucket, ROOT + "validated/")
    assert keys == [ROOT + f"validated/{n:02d}.json" for n in range(N)]


def test_persistent_upload_failure_is_recorded_and_picked_up_next_run(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    landing: dict[str, Any],
) -> None:  # fmt: skip
    seed(s3, source_bucket)

    def fail_uploads_of_odd_files(method: str, path: str, n: int) -> str | None:
        name = path.split("?")[0].rsplit("/", 1)[-1]
        if method == "PUT" and name.endswith(".json") and name[:2].isdigit() and int(name[:2]) % 2:
            return "503"
        return None

    services = {"svc": s3_service(s3_server.url, source_bucket)}
    with faulty_proxy(s3_server.url, fail_uploads_of_odd_files) as proxy:
        retry = {"attempts": 2, "backoff": 0.01, "max_backoff": 0.02}
        proxied = {**landing, "endpoint_url": proxy.url, "retry": retry}
        first = run_jobs(services, [("j", "svc")], landing=proxied).jobs[0]
    assert first.status is JobStatus.FAILED
    assert first.counts.failed == N // 2 and first.counts.valid == N // 2
    assert "files failed" in (first.error or "")
    manifest = read_json(s3, landing_bucket, ROOT + "_manifests/j.json")
    failed = [f for f in manifest["files"] if f["outcome"] == "failed"]
    assert len(failed) == N // 2 and all(
        "503" in f["error"] or "SlowDown" in f["error"] for f in failed
    )

    second = run_jobs(services, [("j", "svc")]).jobs[0]
    assert second.status is JobStatus.COMPLETED
    assert (second.counts.valid, second.counts.skipped) == (N // 2, N // 2)
    assert len(list_keys(s3, landing_bucket, ROOT + "validated/")) == N
