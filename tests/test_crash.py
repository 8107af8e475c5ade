"""A run SIGKILLed mid-batch, then run again: every valid file lands byte for byte, nothing
partial is left anywhere, no manifest lists a file twice, and a third run lands nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from module_system.demo.servers import MotoServer
from module_system.state import StateStore
from tests.faulty_proxy import faulty_proxy
from tests.helpers import list_keys, read_json, write_batch, write_registry
from tests.s3_helpers import s3_service

ROOT = "data/s3/svc/"
SMALL = 40
BIG_LINES = 70_000  # ~6 MB of NDJSON: a multipart upload with 5 MB parts


def seed(s3: Any, bucket: str) -> dict[str, bytes]:
    bodies = {}
    for n in range(SMALL):
        bodies[f"{n:02d}.json"] = json.dumps({"id": n, "day": "2026-05-05"}).encode()
    line = json.dumps({"id": 1, "day": "2026-05-05", "pad": "x" * 60}).encode() + b"\n"
    for n in range(2):
        bodies[f"big{n}.ndjson"] = line * BIG_LINES
    bodies["bad.json"] = b'{"id": "nope"}'
    for name, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=f"in/{name}", Body=body)
    return bodies


def run_cli(tmp_path: Path, state_url: str, job_id: str) -> subprocess.Popen[bytes]:
    args = ["run", "--batch-file", str(tmp_path / f"{job_id}.json"),
            "--registry", str(tmp_path / "registry.yaml"), "--state-url", state_url,
            "--log-dir", str(tmp_path / "logs"),
            "--report", str(tmp_path / f"{job_id}.report")]  # fmt: skip
    write_batch(tmp_path / f"{job_id}.json", [(job_id, "svc")])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.Popen([sys.executable, "-m", "module_system", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def test_a_killed_run_is_completed_by_the_next_without_duplicates_or_partial_objects(
    tmp_path: Path, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    landing: dict[str, Any], state_url: str,
) -> None:  # fmt: skip
    bodies = seed(s3, source_bucket)
    multipart = {**landing, "multipart_threshold_mb": 5, "multipart_chunksize_mb": 5}

    def slow_uploads(method: str, path: str, n: int) -> str | None:
        if method in ("PUT", "POST"):
            time.sleep(0.15)  # slow enough that the kill lands mid-batch
        return None

    with faulty_proxy(s3_server.url, slow_uploads) as proxy:
        services = {"svc": s3_service(s3_server.url, source_bucket, concurrency=4)}
        slowed = {**multipart, "endpoint_url": proxy.url}
        write_registry(tmp_path / "registry.yaml", slowed, services)
        first = run_cli(tmp_path, state_url, "j1")
        deadline = time.monotonic() + 60
        while len(list_keys(s3, landing_bucket, ROOT + "validated/")) < 8:
            assert first.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait()

    write_registry(tmp_path / "registry.yaml", multipart, services)
    second = run_cli(tmp_path, state_url, "j2")
    assert second.wait(120) == 0, second.stderr.read().decode() if second.stderr else ""

    valid = list_keys(s3, landing_bucket, ROOT + "validated/")
    assert valid == sorted(ROOT + f"validated/{n}" for n in bodies if n != "bad.json")
    for name, body in bodies.items():
        area = "quarantine" if name == "bad.json" else "validated"
        got = s3.get_object(Bucket=landing_bucket, Key=f"{ROOT}{area}/{name}")["Body"].read()
        assert got == body, name
    assert list_keys(s3, landing_bucket, ROOT + "_staging/") == []
    assert s3.list_multipart_uploads(Bucket=landing_bucket).get("Uploads", []) == []
    files = read_json(s3, landing_bucket, ROOT + "_manifests/j2.json")["files"]
    assert len({f["key"] for f in files}) == len(files) == len(bodies)

    store = StateStore(state_url)
    try:
        killed = next(run for run in store.runs() if any(
            job["job_id"] == "j1" for job in store.jobs(run["run_id"])))  # fmt: skip
        job = store.jobs(killed["run_id"])[0]
        # the next job of the service took over the dead run's lease and closed its record
        assert killed["status"] == "interrupted"
        assert job["status"] == "failed" and "interrupted" in job["error"]
    finally:
        store.close()

    third = run_cli(tmp_path, state_url, "j3")
    assert third.wait(120) == 0
    counts = json.loads((tmp_path / "j3.report").read_text())["jobs"][0]["counts"]
    assert counts["uploaded"] == 0 and counts["skipped"] == len(bodies)
