"""Delivery guarantees: nothing silently overwritten, nothing lost (issue 8 §2)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from module_system.demo.servers import MotoServer
from module_system.pipeline import files as file_flow
from module_system.pipeline.options import RunOptions
from module_system.results import JobStatus
from module_system.state import StateStore
from tests.faulty_proxy import faulty_proxy
from tests.helpers import RunJobs, list_keys, read_json
from tests.pg_proxy import TcpProxy
from tests.s3_helpers import s3_service

ROOT = "data/s3/svc/"


def put(s3: Any, bucket: str, name: str, document: dict[str, Any]) -> bytes:
    body = json.dumps(document).encode()
    s3.put_object(Bucket=bucket, Key=f"in/{name}", Body=body)
    return body


def landed_bytes(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_a_failed_overwrite_keeps_the_last_good_object(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    landing: dict[str, Any],
) -> None:  # fmt: skip
    good = put(s3, source_bucket, "a.json", {"id": 1, "day": "2026-05-05"})
    services = {"svc": s3_service(s3_server.url, source_bucket)}
    retrying = {**landing, "retry": {"attempts": 2, "backoff": 0.01, "max_backoff": 0.02}}
    first = run_jobs(services, [("j1", "svc")], landing=retrying).jobs[0]
    assert first.status is JobStatus.COMPLETED, first.error

    put(s3, source_bucket, "a.json", {"id": 2, "day": "2026-05-06"})  # changed, still valid

    def corrupt_every_upload(method: str, path: str, n: int) -> str | None:
        return "bad_checksum" if method == "PUT" and "/data/" in path else None

    with faulty_proxy(s3_server.url, corrupt_every_upload) as proxy:
        proxied = {**retrying, "endpoint_url": proxy.url}
        second = run_jobs(services, [("j2", "svc")], landing=proxied).jobs[0]
    assert proxy.faults >= 2  # each attempt's upload was judged corrupt
    assert second.status is JobStatus.FAILED and second.counts.failed == 1
    assert landed_bytes(s3, landing_bucket, ROOT + "validated/a.json") == good
    assert list_keys(s3, landing_bucket, ROOT + "_staging/") == []


def test_a_changed_file_that_became_invalid_supersedes_a_valid_version(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str
) -> None:
    good = put(s3, source_bucket, "a.json", {"id": 1, "day": "2026-05-05"})
    services = {"svc": s3_service(s3_server.url, source_bucket)}
    run_jobs(services, [("j1", "svc")])
    put(s3, source_bucket, "a.json", {"id": "not a number", "day": "2026-05-05"})

    job = run_jobs(services, [("j2", "svc")]).jobs[0]

    assert job.counts.invalid == 1
    entry = read_json(s3, landing_bucket, ROOT + "_manifests/j2.json")["files"][0]
    assert entry["outcome"] == "quarantined" and entry["note"] == "supersedes a valid version"
    # the last valid copy stays, as documented
    assert landed_bytes(s3, landing_bucket, ROOT + "validated/a.json") == good
    assert ROOT + "quarantine/a.json" in list_keys(s3, landing_bucket, ROOT + "quarantine/")


def test_every_file_outcome_is_recorded_per_job_with_the_validator_messages(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, state_url: str
) -> None:
    put(s3, source_bucket, "good.json", {"id": 1, "day": "2026-05-05"})
    put(s3, source_bucket, "bad.json", {"id": "x", "day": "2026-05-05"})
    services = {"svc": s3_service(s3_server.url, source_bucket)}
    first = run_jobs(services, [("j1", "svc")])
    run_jobs(services, [("j2", "svc")])

    store = StateStore(state_url)
    try:
        rows = {r["item_key"]: r for r in store.job_files(first.run_id, "j1")}
        assert {k: r["outcome"] for k, r in rows.items()} == {
            "good.json": "landed", "bad.json": "quarantined"}  # fmt: skip
        messages = rows["bad.json"]["details"]["messages"]
        assert messages and "id" in messages[0]["location"]
        assert rows["good.json"]["landing_key"] == ROOT + "validated/good.json"
        assert len(rows["good.json"]["sha256"]) == 64
    finally:
        store.close()


def test_listing_state_is_looked_up_in_batches_not_loaded_whole(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    for n in range(7):
        put(s3, source_bucket, f"{n}.json", {"id": n, "day": "2026-05-05"})
    monkeypatch.setattr(file_flow, "LOOKUP_BATCH", 3)
    asked: list[int | None] = []
    original = StateStore.landed_files

    def spy(self: StateStore, service_id: str, item_keys: Any = None) -> Any:
        asked.append(None if item_keys is None else len(item_keys))
        return original(self, service_id, item_keys)

    monkeypatch.setattr(StateStore, "landed_files", spy)
    services = {"svc": s3_service(s3_server.url, source_bucket)}
    run_jobs(services, [("j1", "svc")])
    job = run_jobs(services, [("j2", "svc")]).jobs[0]
    assert job.counts.skipped == 7
    assert asked and all(n is not None and n <= 3 for n in asked)  # never "everything"


@pytest.mark.parametrize("cut_at", ["first download", "listing"])
def test_a_state_store_outage_keeps_landed_files_landed_and_the_next_run_relands_them(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    pg_database: str, cut_at: str,
) -> None:  # fmt: skip
    """The store goes away mid-job: at the first download (what landed before was read
    already), or while the source is listed (it cannot be read: every file then lands, as a
    replacement proven before it replaces a key)."""
    bodies = {f"{n}.json": put(s3, source_bucket, f"{n}.json", {"id": n, "day": "2026-05-05"})
              for n in range(5)}  # fmt: skip
    listing = f"/{source_bucket}?list-type=2"
    with TcpProxy("127.0.0.1", 5432) as pg:
        url = pg_database.replace("127.0.0.1:5432", f"127.0.0.1:{pg.port}")
        cut = threading.Event()

        def cut_state(method: str, path: str, n: int) -> str | None:
            at = path.startswith(listing) if cut_at == "listing" else "/in/" in path
            if method == "GET" and at and not cut.is_set():
                cut.set()
                pg.cut()  # the state store goes away in the middle of the job
            return None

        with faulty_proxy(s3_server.url, cut_state) as proxy:
            services = {"svc": s3_service(proxy.url, source_bucket)}
            first = run_jobs(services, [("j1", "svc")], state_url=url).jobs[0]
        assert cut.is_set()
        assert first.counts.valid == 5 and first.counts.failed == 0, first.error
        assert any("not recorded" in note for note in first.notes)
        if cut_at == "listing":
            assert any("without knowing what landed before" in note for note in first.notes)

        pg.restore()
        services = {"svc": s3_service(s3_server.url, source_bucket)}
        second = run_jobs(services, [("j2", "svc")], state_url=url).jobs[0]
    assert second.status is JobStatus.COMPLETED and second.counts.valid == 5  # landed again
    for name, body in bodies.items():
        assert landed_bytes(s3, landing_bucket, ROOT + f"validated/{name}") == body
    assert list_keys(s3, landing_bucket, ROOT + "validated/") == sorted(
        ROOT + f"validated/{name}" for name in bodies)  # fmt: skip
    assert list_keys(s3, landing_bucket, ROOT + "_staging/") == []


def test_a_big_file_landed_again_on_a_full_refresh_never_replaces_the_good_object_unproven(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    landing: dict[str, Any],
) -> None:  # fmt: skip
    """A full refresh knows nothing of what is landed, so a big file is not streamed over its
    key while it downloads: it lands through staging, and an upload that fails its check
    leaves the last good object in place."""
    line = json.dumps({"id": 1, "day": "2026-05-05"}).encode() + b"\n"
    big = line * (file_flow.PARALLEL_CHECK_BYTES // len(line) + 1)
    s3.put_object(Bucket=source_bucket, Key="in/big.ndjson", Body=big)
    in_parts = {**landing, "multipart_threshold_mb": 5, "multipart_chunksize_mb": 5,
                "retry": {"attempts": 2, "backoff": 0.01, "max_backoff": 0.02}}  # fmt: skip
    services = {"svc": s3_service(s3_server.url, source_bucket)}
    first = run_jobs(services, [("j1", "svc")], landing=in_parts).jobs[0]
    assert first.status is JobStatus.COMPLETED and first.counts.valid == 1, first.error

    def corrupt_every_check(method: str, path: str, n: int) -> str | None:
        return "bad_checksum" if method in ("PUT", "HEAD") and "/data/" in path else None

    with faulty_proxy(s3_server.url, corrupt_every_check) as proxy:
        proxied = {**in_parts, "endpoint_url": proxy.url}
        second = run_jobs(services, [("j2", "svc")], RunOptions(full_refresh=True),
                          landing=proxied).jobs[0]  # fmt: skip
    assert proxy.faults >= 1
    assert second.status is JobStatus.FAILED and second.counts.failed == 1
    assert landed_bytes(s3, landing_bucket, ROOT + "validated/big.ndjson") == big
    assert list_keys(s3, landing_bucket, ROOT + "_staging/") == []
