"""Pieces of the Dask executor that need no cluster: fingerprints, progress batching,
the scheduler's buckets, and the order in which chained jobs start."""

from __future__ import annotations

import asyncio
from typing import Any

from module_system.config.models import JobSpec
from module_system.orchestrator.chains import ServiceChains
from module_system.orchestrator.cluster_limits import RESERVE, ClusterLimits
from module_system.orchestrator.fingerprint import differences
from module_system.orchestrator.progress import EventProgress, apply_files
from module_system.orchestrator.stats import BatchStats
from module_system.results import FileOutcome


def test_fingerprint_differences_name_each_plugin_and_version() -> None:
    client = {"module_system": "0.2.0", "module_system.sources:ftp2": "acme-ftp 1.1",
              "module_system.validators:xml": "acme-xml 3.0"}  # fmt: skip
    worker = {"module_system": "0.1.0", "module_system.validators:xml": "acme-xml 2.9",
              "module_system.sources:extra": "other 1.0"}  # fmt: skip
    assert differences(client, worker) == [
        "module_system 0.1.0 is installed here, the client has 0.2.0",
        "source plugin 'extra' (other 1.0) is installed here but not on the client",
        "source plugin 'ftp2' (acme-ftp 1.1) is installed on the client but not here",
        "validator plugin 'xml' is acme-xml 2.9 here, acme-xml 3.0 on the client",
    ]
    assert differences(client, dict(client)) == []


def test_progress_is_sent_in_batches_and_adds_up() -> None:
    sent: list[dict[str, Any]] = []
    progress = EventProgress(sent.append, "j1", interval=3600)  # nothing is due before flush
    for _ in range(5):
        progress.file_listed()
    for outcome in (FileOutcome.LANDED, FileOutcome.LANDED, FileOutcome.SKIPPED):
        progress.file_finished(outcome, 10)
    assert sent == []
    progress.flush()
    progress.flush()  # nothing new: no message
    assert sent == [{"kind": "files", "job": "j1", "listed": 5,
                     "outcomes": {"landed": 2, "skipped": 1}, "bytes": 30}]  # fmt: skip
    stats = BatchStats()
    apply_files(stats, sent[0])
    snapshot = stats.snapshot()
    assert (snapshot.files_listed, snapshot.files_done, snapshot.files_landed) == (5, 3, 2)
    assert (snapshot.files_skipped, snapshot.bytes) == (1, 30)


def test_the_schedulers_bucket_is_per_host_and_the_strictest_limit_wins() -> None:
    class Scheduler:
        handlers: dict[str, Any] = {}

    limits = ClusterLimits()
    asyncio.run(limits.start(Scheduler()))
    reserve = Scheduler.handlers[RESERVE]
    assert reserve(host="API.example:443", rate=10.0, burst=1) == 0  # the burst
    assert reserve(host="api.example:443", rate=2.0, burst=1) > 0.4  # 2/s now: wait ~0.5 s
    assert reserve(host="other:80", rate=None, burst=1) == 0
    assert limits.stats() == {
        "api.example:443": {"granted": 2, "rate": 2.0, "burst": 1},
        "other:80": {"granted": 1, "rate": None, "burst": 1},
    }


def test_services_take_turns_and_a_service_waits_for_its_running_job() -> None:
    jobs = [JobSpec(job_id=j, service_id=s) for j, s in
            [("a1", "a"), ("a2", "a"), ("b1", "b"), ("c1", "c"), ("a3", "a")]]  # fmt: skip
    chains = ServiceChains(jobs)
    started = [chains.next_job(), chains.next_job(), chains.next_job(), chains.next_job()]
    assert [j.job_id if j else None for j in started] == ["a1", "b1", "c1", None]
    chains.finished("b")  # b has no more jobs
    assert chains.next_job() is None
    chains.finished("a")
    assert [chains.next_job().job_id, chains.next_job()] == ["a2", None]  # type: ignore[union-attr]
    chains.finished("a")
    assert chains.next_job().job_id == "a3"  # type: ignore[union-attr]
