"""The state store on SQLite and on the machine's PostgreSQL, through the same code."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from module_system.demo.servers import MotoServer
from module_system.results import JobStatus
from module_system.state import FileRecord, StateStore, resolve_state_url
from module_system.state.migrations import MIGRATIONS
from tests.helpers import RunJobs, pg_database
from tests.s3_helpers import s3_service


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """One throwaway database for the module's PostgreSQL tests."""
    with pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("pg_url"))


def record(key: str, sha: str = "a" * 64, version: str = "v1") -> FileRecord:
    return FileRecord(
        key, f"s3://b/{key}", version, 10, sha, "valid", f"data/s3/x/{key}", "r1", "j1"
    )


def test_files_cursors_runs_and_jobs_round_trip(store_url: str) -> None:
    service = f"svc-{uuid.uuid4().hex[:6]}"
    store = StateStore(store_url)
    store.record_file(service, record("a.json"))
    store.record_file(service, record("a.json", sha="b" * 64, version="v2"))  # upsert
    store.record_file(service, record("dir/b.json"))
    landed = store.landed_files(service)
    assert set(landed) == {"a.json", "dir/b.json"}
    assert landed["a.json"].sha256 == "b" * 64 and landed["a.json"].version == "v2"

    assert store.get_cursor(service, "updated_at") is None
    store.cursors_for(service).set("updated_at", "2026-01-01")
    store.cursors_for(service).set("updated_at", "2026-02-01")
    assert store.cursors_for(service).get("updated_at") == "2026-02-01"

    run_id = f"run-{uuid.uuid4().hex[:6]}"
    store.start_run(run_id, "desc", "jobs.json")
    store.save_job(run_id, "j1", service, status="running")
    store.save_job(run_id, "j1", service, status="completed", counts={"valid": 3})
    store.finish_run(run_id, "completed")
    assert any(r["run_id"] == run_id and r["status"] == "completed" for r in store.runs(50))
    (job,) = store.jobs(run_id)
    assert job["status"] == "completed" and job["counts"] == {"valid": 3}
    store.close()


def test_migrations_are_recorded_once(store_url: str) -> None:
    StateStore(store_url).close()
    store = StateStore(store_url)  # second open applies nothing new
    with store.engine.connect() as conn:
        versions = [
            row[0] for row in conn.exec_driver_sql("SELECT version FROM ms_schema_migrations")
        ]
    assert versions == [v for v, _, _ in MIGRATIONS]
    store.close()


def test_postgres_urls_use_psycopg3() -> None:
    assert resolve_state_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert resolve_state_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert resolve_state_url("sqlite:///x.db") == "sqlite:///x.db"


def test_incremental_run_on_postgres(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, pg_url: str
) -> None:
    for n in range(3):
        s3.put_object(Bucket=source_bucket, Key=f"in/{n}.json",
                      Body=json.dumps({"id": n, "day": "2026-01-01"}).encode())  # fmt: skip
    services = {"pgsvc": s3_service(s3_server.url, source_bucket)}
    first = run_jobs(services, [("j", "pgsvc")], state_url=pg_url).jobs[0]
    second = run_jobs(services, [("j", "pgsvc")], state_url=pg_url).jobs[0]
    assert first.status is second.status is JobStatus.COMPLETED
    assert (first.counts.valid, second.counts.skipped, second.counts.uploaded) == (3, 3, 0)


def test_record_files_in_one_batch_last_record_of_a_key_wins(store_url: str) -> None:
    service = f"svc-{uuid.uuid4().hex[:6]}"
    store = StateStore(store_url)
    store.record_files(service, [record("a", sha="1" * 64), record("b"), record("a", sha="2" * 64)])
    store.record_files(service, [record("b", version="v9")])
    landed = store.landed_files(service)
    assert landed["a"].sha256 == "2" * 64 and landed["b"].version == "v9"
    store.close()


def test_the_state_url_password_is_masked_even_alone(pg_url: str) -> None:
    from module_system.observability.redaction import redact

    with_password = pg_url.replace("postgres@", "postgres:s3cret-state-pw@")  # trust auth
    StateStore(with_password).close()
    assert "s3cret-state-pw" not in redact("server said: s3cret-state-pw is wrong")
