"""One job per service at a time, across runs, processes and machines (issue 8 §2)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from module_system.demo.servers import MotoServer
from module_system.errors import JobCancelled
from module_system.pipeline import RunOptions
from module_system.results import JobStatus
from module_system.state import StateStore, schema
from module_system.state.lease import LeaseHeld, ServiceLease
from tests.faulty_proxy import faulty_proxy
from tests.helpers import RunJobs
from tests.s3_helpers import s3_service


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("pg_database")
    state = StateStore(url)
    yield state
    state.close()


def test_a_second_taker_is_told_who_holds_the_service(store: StateStore) -> None:
    first = ServiceLease(store, "svc", "run-A", "job-1")
    first.acquire()
    try:
        with pytest.raises(LeaseHeld, match=r"service svc is being run by run run-A .* since 20"):
            ServiceLease(store, "svc", "run-B", "job-2").acquire()
        ServiceLease(store, "other", "run-B", "job-3").acquire()  # other services are free
    finally:
        first.release()
    again = ServiceLease(store, "svc", "run-B", "job-2")
    again.acquire()  # released: free again
    again.release()


def _plant(store: StateStore, holder: str, expires_in: float) -> None:
    now = datetime.now(UTC)
    with store.engine.begin() as conn:
        conn.execute(schema.leases.insert().values(
            service_id="svc", run_id="old-run", job_id="old-job", holder=holder,
            acquired_at=now - timedelta(hours=1), expires_at=now + timedelta(seconds=expires_in),
        ))  # fmt: skip


def test_a_lease_left_on_another_host_expires(store: StateStore) -> None:
    _plant(store, "another-host:1234:abcd", expires_in=3600)
    with pytest.raises(LeaseHeld):
        ServiceLease(store, "svc", "run-B", "job-2").acquire()
    with store.engine.begin() as conn:
        conn.execute(update(schema.leases).values(expires_at=datetime.now(UTC) - timedelta(1)))
    lease = ServiceLease(store, "svc", "run-B", "job-2")
    lease.acquire()
    assert lease.current() is not None and lease.current().run_id == "run-B"  # type: ignore[union-attr]
    lease.release()


def test_a_lease_of_a_killed_process_on_this_host_is_taken_over_at_once(store: StateStore) -> None:
    import socket

    dead = subprocess.Popen(["true"])
    dead.wait()
    _plant(store, f"{socket.gethostname()}:{dead.pid}:dead", expires_in=3600)
    lease = ServiceLease(store, "svc", "run-B", "job-2")
    lease.acquire()
    lease.release()


def test_wait_for_lease_waits_until_the_holder_releases_and_honours_cancel(
    store: StateStore,
) -> None:
    holder = ServiceLease(store, "svc", "run-A", "job-1", ttl=4)
    holder.acquire()
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    with pytest.raises(JobCancelled):
        ServiceLease(store, "svc", "run-B", "job-2", ttl=4).acquire(wait=True, cancel=cancel)
    threading.Timer(0.3, holder.release).start()
    waiter = ServiceLease(store, "svc", "run-B", "job-2", ttl=4)
    waiter.acquire(wait=True)
    assert waiter.current().run_id == "run-B"  # type: ignore[union-attr]
    waiter.release()


def test_the_running_job_renews_its_lease(store: StateStore) -> None:
    lease = ServiceLease(store, "svc", "run-A", "job-1", ttl=0.6)
    lease.acquire()
    try:
        first = lease.current().expires_at  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while lease.current().expires_at == first and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.05)
        assert lease.current().expires_at > first  # type: ignore[union-attr]
        assert not lease.lost.is_set()
    finally:
        lease.release()


def test_overlapping_runs_of_one_service_fail_fast_or_wait(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, state_url: str
) -> None:
    for n in range(3):
        body = json.dumps({"id": n, "day": "2026-05-05"}).encode()
        s3.put_object(Bucket=source_bucket, Key=f"in/{n}.json", Body=body)
    release = threading.Event()

    def hold_downloads(method: str, path: str, n: int) -> str | None:
        if method == "GET" and "/in/" in path:
            release.wait(30)  # the first run stays inside its job until we say so
        return None

    results: list[Any] = []
    with faulty_proxy(s3_server.url, hold_downloads) as proxy:
        slow = {"svc": s3_service(proxy.url, source_bucket)}
        runner = threading.Thread(target=lambda: results.append(run_jobs(slow, [("j1", "svc")])))
        runner.start()
        _wait_for_lease(state_url, "svc", runner)
        services = {"svc": s3_service(s3_server.url, source_bucket)}
        second = run_jobs(services, [("j2", "svc")]).jobs[0]
        assert second.status is JobStatus.FAILED
        assert "service svc is being run by run" in (second.error or "")

        wait = RunOptions(wait_for_lease=True)
        waiting = threading.Thread(
            target=lambda: results.append(run_jobs(services, [("j3", "svc")], wait))
        )
        waiting.start()
        release.set()
        runner.join(30), waiting.join(30)
    first, third = (r.jobs[0] for r in sorted(results, key=lambda r: r.jobs[0].job_id))
    assert first.status is JobStatus.COMPLETED and first.counts.valid == 3
    assert third.status is JobStatus.COMPLETED and third.counts.skipped == 3  # ran after


def _wait_for_lease(state_url: str, service_id: str, runner: threading.Thread) -> None:
    store = StateStore(state_url)
    try:
        deadline = time.monotonic() + 120  # generous: CI machines can be very busy
        while ServiceLease(store, service_id, "", "").current() is None:
            assert runner.is_alive(), "the first run ended without taking the lease"
            assert time.monotonic() < deadline, "the first run never took the lease"
            time.sleep(0.05)
    finally:
        store.close()
