"""S3 → S3 end to end against a real S3 API server (moto in server mode) over HTTP."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from module_system.demo.servers import MotoServer
from module_system.pipeline import RunOptions
from module_system.results import JobStatus
from tests.helpers import RunJobs, list_keys, read_json, sha256, write_batch, write_registry
from tests.s3_helpers import s3_service

ROOT = "data/s3/svc/"


def put(s3: Any, bucket: str, files: dict[str, bytes | str]) -> None:
    for key, body in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode() if isinstance(body, str) else body)


def test_happy_path_invalid_and_unparseable(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing: dict[str, Any]
) -> None:
    good = json.dumps({"id": 1, "day": "2026-11-28"})
    put(s3, source_bucket, {
        "in/a/good.json": good,
        "in/lines.ndjson": '{"id": 2, "day": "2026-11-01"}\n{"id": "x", "day": "2026-13-45"}\n',
        "in/bad.json": json.dumps({"id": "one"}),
        "in/broken.json": '{"id": 1,',
        "in/skip.txt": "not included",
        "other/ignored.json": good,
    })  # fmt: skip
    result = run_jobs({"svc": s3_service(s3_server.url, source_bucket)}, [("job1", "svc")])
    (job,) = result.jobs
    assert job.status is JobStatus.COMPLETED, job.error
    assert (job.counts.listed, job.counts.valid, job.counts.invalid) == (4, 1, 3)
    bucket = landing["bucket"]
    keys = list_keys(s3, bucket)
    assert ROOT + "validated/a/good.json" in keys
    for name in ("bad.json", "broken.json", "lines.ndjson"):
        assert ROOT + f"quarantine/{name}" in keys
        assert ROOT + f"quarantine/{name}.error.json" in keys
    body = s3.get_object(Bucket=bucket, Key=ROOT + "validated/a/good.json")["Body"].read()
    assert body == good.encode()

    report = read_json(s3, bucket, ROOT + "quarantine/lines.ndjson.error.json")
    assert report["valid"] is False and report["error_count"] == 2
    locations = {e["location"] for e in report["errors"]}
    assert locations == {"line 2: $.id", "line 2: $.day"}
    broken = read_json(s3, bucket, ROOT + "quarantine/broken.json.error.json")
    assert "not parseable JSON" in broken["errors"][0]["message"]

    manifest = read_json(s3, bucket, ROOT + "_manifests/job1.json")
    by_key = {f["key"]: f for f in manifest["files"]}
    assert set(by_key) == {"a/good.json", "lines.ndjson", "bad.json", "broken.json"}
    entry = by_key["a/good.json"]
    assert entry["sha256"] == sha256(good.encode())
    assert entry["verdict"] == "valid" and entry["landing_key"] == ROOT + "validated/a/good.json"
    assert entry["source_uri"] == f"s3://{source_bucket}/in/a/good.json"
    assert entry["version"] and entry["size"] == len(good)

    head = s3.head_object(Bucket=bucket, Key=ROOT + "validated/a/good.json")
    assert head["Metadata"]["job-id"] == "job1"
    assert head["Metadata"]["source-uri"] == f"s3://{source_bucket}/in/a/good.json"


def test_incremental_rerun_and_changed_file(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing: dict[str, Any]
) -> None:
    put(
        s3,
        source_bucket,
        {f"in/{n}.json": json.dumps({"id": n, "day": "2026-01-01"}) for n in range(5)},
    )
    services = {"svc": s3_service(s3_server.url, source_bucket)}
    first = run_jobs(services, [("j", "svc")]).jobs[0]
    assert (first.counts.uploaded, first.counts.skipped) == (5, 0)

    second = run_jobs(services, [("j", "svc")]).jobs[0]
    assert second.status is JobStatus.COMPLETED
    assert (second.counts.uploaded, second.counts.skipped, second.counts.fetched) == (0, 5, 0)

    changed = json.dumps({"id": 3, "day": "2026-02-02"}).encode()
    put(s3, source_bucket, {"in/3.json": changed})
    third = run_jobs(services, [("j", "svc")]).jobs[0]
    assert (third.counts.uploaded, third.counts.skipped) == (1, 4)
    landed = s3.get_object(Bucket=landing["bucket"], Key=ROOT + "validated/3.json")["Body"].read()
    assert landed == changed

    full = run_jobs(services, [("j", "svc")], RunOptions(full_refresh=True)).jobs[0]
    assert (full.counts.uploaded, full.counts.skipped) == (5, 0)


def test_multipart_upload_is_verified(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing: dict[str, Any]
) -> None:
    line = json.dumps({"id": 7, "day": "2026-03-04", "pad": "x" * 200}) + "\n"
    data = (line * (12 * 1024 * 1024 // len(line) + 1)).encode()
    put(s3, source_bucket, {"in/big.ndjson": data})
    multipart = {**landing, "multipart_threshold_mb": 5, "multipart_chunksize_mb": 5}
    services = {"svc": s3_service(s3_server.url, source_bucket)}
    job = run_jobs(services, [("j", "svc")], landing=multipart).jobs[0]
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.counts.valid == 1 and job.counts.bytes == len(data)
    key = ROOT + "validated/big.ndjson"
    head = s3.head_object(Bucket=landing["bucket"], Key=key, ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(data)
    assert head["Metadata"]["sha256"] == sha256(data)
    assert head.get("ChecksumSHA256")  # S3 stored (and we compared) a SHA-256 checksum
    assert s3.get_object(Bucket=landing["bucket"], Key=key)["Body"].read() == data


def test_missing_source_bucket_fails_the_job_clearly(
    run_jobs: RunJobs, s3_server: MotoServer
) -> None:
    services = {"svc": s3_service(s3_server.url, "no-such-bucket-here")}
    result = run_jobs(services, [("j", "svc")])
    job = result.jobs[0]
    assert job.status is JobStatus.FAILED
    assert "s3://no-such-bucket-here" in job.error and "NoSuchBucket" in job.error
    assert result.exit_code() == 1


def test_path_like_keys_stay_inside_their_folders(
    tmp_path: Path, run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str,
    landing: dict[str, Any],
) -> None:  # fmt: skip
    body = json.dumps({"id": 1, "day": "2026-01-01"})
    long_name = "d" * 250 + "/" + "e" * 250 + "/" + "f" * 400 + ".json"
    put(s3, source_bucket, {
        "in/../escape.json": body,
        "in//abs/path.json": body,
        "in/./dot.json": body,
        "in/" + long_name: body,
    })  # fmt: skip
    temp_root = tmp_path / "tmp"
    temp_root.mkdir()
    services = {"svc": s3_service(s3_server.url, source_bucket)}
    result = run_jobs(services, [("j", "svc")], RunOptions(temp_dir=temp_root))
    job = result.jobs[0]
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.counts.valid == 4
    keys = [k for k in list_keys(s3, landing["bucket"]) if "_manifests" not in k]
    assert all(k.startswith(ROOT + "validated/") for k in keys)
    assert all("/../" not in k and "/./" not in k and "//" not in k for k in keys)
    assert ROOT + "validated/%2E%2E/escape.json" in keys
    assert all(len(k.encode()) <= 1024 for k in keys)
    assert list(temp_root.iterdir()) == []  # temp files removed
    assert not list(tmp_path.glob("escape.json")) and not Path("/abs/path.json").exists()


def test_secrets_never_reach_logs_reports_or_state(
    tmp_path: Path, s3: Any, s3_server: MotoServer, source_bucket: str, landing: dict[str, Any],
    state_url: str, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from click.testing import CliRunner

    from module_system.cli import main

    secret = "Sup3r-Secret-Value-42"
    monkeypatch.setenv("LANDING_SECRET", secret)
    put(s3, source_bucket, {"in/a.json": json.dumps({"id": 1, "day": "2026-01-01"})})
    keys = {"aws_access_key_id": "demo-access-key", "aws_secret_access_key": "${LANDING_SECRET}"}
    source = s3_service(s3_server.url, "no-such-bucket-" + secret.lower()[:10])
    services = {"ok": s3_service(s3_server.url, source_bucket), "bad": source}
    registry = write_registry(tmp_path / "r.yaml", {**landing, **keys}, services)
    batch = write_batch(tmp_path / "b.json", [("j1", "ok"), ("j2", "bad")])
    logs, report = tmp_path / "logs", tmp_path / "report.json"
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    result = CliRunner().invoke(main, [
        "run", "--batch-file", str(batch), "--registry", str(registry), "--state-url", state_url,
        "--log-dir", str(logs), "--report", str(report), "--monitor-duration", "0",
    ])  # fmt: skip
    assert result.exit_code == 1  # j2 fails
    texts = [result.output, report.read_text(), *(p.read_text() for p in logs.iterdir())]
    texts.append(Path(state_url.removeprefix("sqlite:///")).read_bytes().decode("latin-1"))
    assert all(secret not in text for text in texts)
    assert (logs / "system_orchestrator_job_executor.log").exists()
    assert (logs / "j1_ok_s3_module.log").exists()
    lines = (logs / "j1_ok_s3_module.log").read_text().splitlines()
    assert lines and all(json.loads(line)["job_id"] == "j1" for line in lines)
    jobs = json.loads(report.read_text())["jobs"]
    assert [j["status"] for j in jobs] == ["completed", "failed"]
    assert jobs[0]["counts"]["valid"] == 1


def test_seed_shim_runs_a_batch(
    tmp_path: Path, s3: Any, s3_server: MotoServer, source_bucket: str, landing: dict[str, Any],
    state_url: str,
) -> None:  # fmt: skip
    import subprocess
    import sys

    put(s3, source_bucket, {"in/a.json": json.dumps({"id": 1, "day": "2026-01-01"})})
    services = {"svc": s3_service(s3_server.url, source_bucket)}
    write_registry(tmp_path / "project_registry.yaml", landing, services)
    batch = write_batch(tmp_path / "jobs.json", [("j1", "svc")])
    checkout = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(checkout), "MODULE_SYSTEM_STATE_URL": state_url}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli_init", "--batch-file", str(batch),
         "--max-workers", "2", "--monitor-duration", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert ROOT + "validated/a.json" in list_keys(s3, landing["bucket"])
    assert (tmp_path / "temp/logs/system_orchestrator_job_executor.log").exists()


def test_keys_that_normalise_alike_land_separately(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing: dict[str, Any]
) -> None:
    keys = ["in/a/b.json", "in/a//b.json", "in/a/../c.json", "in/a/%2E%2E/c.json"]
    put(
        s3,
        source_bucket,
        {k: json.dumps({"id": n, "day": "2026-01-01"}) for n, k in enumerate(keys)},
    )
    job = run_jobs({"svc": s3_service(s3_server.url, source_bucket)}, [("j", "svc")]).jobs[0]
    assert job.status is JobStatus.COMPLETED and job.counts.valid == 4
    landed = list_keys(s3, landing["bucket"], ROOT + "validated/")
    assert len(landed) == 4
    bodies = {json.loads(s3.get_object(Bucket=landing["bucket"], Key=k)["Body"].read())["id"]
              for k in landed}  # fmt: skip
    assert bodies == {0, 1, 2, 3}


def test_missing_landing_bucket_stops_the_job_at_once(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing: dict[str, Any]
) -> None:
    files = {f"in/{n:03d}.json": json.dumps({"id": n, "day": "2026-01-01"}) for n in range(60)}
    put(s3, source_bucket, files)
    missing = {**landing, "bucket": "no-such-landing-bucket"}
    service = s3_service(s3_server.url, source_bucket, concurrency=2)
    job = run_jobs({"svc": service}, [("j", "svc")], landing=missing).jobs[0]
    assert job.status is JobStatus.FAILED
    assert "NoSuchBucket" in (job.error or "") and "credentials:" in (job.error or "")
    assert job.counts.fetched < 10  # stopped, not 60 files failed one by one


def test_two_jobs_of_one_service_run_one_after_the_other(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str
) -> None:
    put(
        s3,
        source_bucket,
        {f"in/{n}.json": json.dumps({"id": n, "day": "2026-01-01"}) for n in range(6)},
    )
    services = {"svc": s3_service(s3_server.url, source_bucket)}
    first, second = run_jobs(services, [("a", "svc"), ("b", "svc")]).jobs
    assert first.counts.uploaded + second.counts.uploaded == 6
    assert first.counts.skipped + second.counts.skipped == 6


def test_fail_on_invalid_fails_the_job(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str
) -> None:
    put(
        s3,
        source_bucket,
        {"in/bad.json": "{}", "in/good.json": json.dumps({"id": 1, "day": "2026-01-01"})},
    )
    services = {"svc": s3_service(s3_server.url, source_bucket)}
    options = RunOptions(fail_on_invalid=True)
    job = run_jobs(services, [("j", "svc")], options).jobs[0]
    assert job.status is JobStatus.FAILED and "--fail-on-invalid" in (job.error or "")
    assert job.counts.invalid == 1 and job.counts.valid == 1  # still landed and quarantined


def test_state_store_outage_does_not_lose_the_batch(
    tmp_path: Path, s3: Any, s3_server: MotoServer, source_bucket: str, landing: dict[str, Any],
    state_url: str,
) -> None:  # fmt: skip
    from sqlalchemy.exc import OperationalError

    from module_system.config import load_batch, load_registry
    from module_system.orchestrator.batch import run_batch
    from module_system.state import StateStore

    class FlakyStore(StateStore):
        def save_job(self, *args: Any, **kwargs: Any) -> None:
            raise OperationalError("UPDATE ms_jobs", {}, Exception("database is locked"))

    put(s3, source_bucket, {"in/a.json": json.dumps({"id": 1, "day": "2026-01-01"})})
    services = {"svc": s3_service(s3_server.url, source_bucket)}
    registry = load_registry(write_registry(tmp_path / "r.yaml", landing, services))
    batch = load_batch(write_batch(tmp_path / "b.json", [("j1", "svc"), ("j2", "svc")]), registry)
    result = run_batch(registry, batch, FlakyStore(state_url))
    assert [j.status for j in result.jobs] == [JobStatus.COMPLETED, JobStatus.COMPLETED]
