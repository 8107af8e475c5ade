"""Executor behaviour: Ctrl-C, job timeouts, exit codes. A local test source stands in for
a slow remote so the timing is under the test's control; landing is the real S3 server."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Self

import pytest
from pydantic import BaseModel

from module_system.pipeline import RunOptions
from module_system.results import JobStatus
from module_system.sources import SOURCE_TYPES, RemoteItem, Source, SourceContext
from module_system.state import StateStore
from tests.helpers import RunJobs


class GateConfig(BaseModel):
    count: int
    pause: float = 0.0


class GateSource(Source):
    """Offers ``count`` tiny files; fetching waits for ``release`` (or ``pause`` seconds)."""

    type_name = "gate"
    config_model = GateConfig
    entered = threading.Event()
    release = threading.Event()

    def __init__(self, config: GateConfig) -> None:
        self.config = config

    @classmethod
    def from_config(cls, config: GateConfig, context: SourceContext) -> Self:
        return cls(config)

    def list_items(self) -> Iterator[RemoteItem]:
        for n in range(self.config.count):
            yield RemoteItem(key=f"{n:03d}.json", uri=f"gate://{n}")

    def fetch(self, item: RemoteItem, dest: Path) -> None:
        GateSource.entered.set()
        if self.config.pause:
            GateSource.release.wait(self.config.pause)
        else:
            GateSource.release.wait(30)
        dest.write_bytes(b"{}")


@pytest.fixture(autouse=True)
def gate_source() -> Iterator[None]:
    SOURCE_TYPES.register("gate", GateSource)
    GateSource.entered.clear()
    GateSource.release.clear()
    yield
    GateSource.release.set()


def press_ctrl_c_once_busy(cancel: threading.Event | None = None) -> None:
    """Once a file is being fetched, send the main thread SIGINT (what Ctrl-C does), then
    let the fetches finish (with ``cancel``: once the batch has taken the interrupt, so no
    other file can start before it)."""
    main_thread = threading.main_thread().ident
    assert main_thread is not None

    def interrupt() -> None:
        GateSource.entered.wait(30)
        signal.pthread_kill(main_thread, signal.SIGINT)
        if cancel is not None:
            cancel.wait(30)
        GateSource.release.set()

    threading.Thread(target=interrupt, daemon=True).start()


def test_ctrl_c_cancels_queued_jobs_and_lets_running_files_finish(run_jobs: RunJobs) -> None:
    press_ctrl_c_once_busy()
    services = {"gate": {"type": "gate", "source": {"count": 20}, "concurrency": 2}}
    jobs = [("j1", "gate"), ("j2", "gate"), ("j3", "gate")]
    result = run_jobs(services, jobs)
    # run_jobs uses 4 workers: all three jobs start, so all end cancelled mid-way
    assert result.interrupted and result.exit_code() == 1
    assert [j.status for j in result.jobs] == [JobStatus.CANCELLED] * 3
    for job in result.jobs:
        assert job.counts.uploaded < 20  # stopped taking new files
        assert job.counts.failed == 0  # files already started finished cleanly


def test_ctrl_c_records_jobs_never_started_as_cancelled(run_jobs: RunJobs, state_url: str) -> None:
    cancel = threading.Event()
    press_ctrl_c_once_busy(cancel)
    # One file at a time: when the interrupt comes, the job's second file is still queued.
    services = {f"g{n}": {"type": "gate", "source": {"count": 3}, "concurrency": 1}
                for n in range(3)}  # fmt: skip
    jobs = [("j0", "g0"), ("j1", "g1"), ("j2", "g2")]
    result = run_jobs(services, jobs, max_workers=1, cancel=cancel)
    assert [j.status for j in result.jobs] == [JobStatus.CANCELLED] * 3
    assert result.jobs[0].counts.uploaded >= 1  # the running job finished its started files
    assert [j.error for j in result.jobs[1:]] == ["not started: batch interrupted"] * 2
    store = StateStore(state_url)
    (run,) = store.runs()
    assert run["status"] == "interrupted"
    assert {j["job_id"]: j["status"] for j in store.jobs(run["run_id"])} == {
        "j0": "cancelled", "j1": "cancelled", "j2": "cancelled"
    }  # fmt: skip
    store.close()


def test_job_timeout(run_jobs: RunJobs) -> None:
    services = {"slow": {"type": "gate", "source": {"count": 200, "pause": 0.05}, "concurrency": 1}}
    result = run_jobs(services, [("j", "slow")], RunOptions(job_timeout=0.3))
    job = result.jobs[0]
    assert job.status is JobStatus.TIMED_OUT
    assert "timed out" in (job.error or "")
    assert job.counts.uploaded < 200
    assert result.exit_code() == 1


def test_quarantine_is_not_a_failure_unless_asked(run_jobs: RunJobs) -> None:
    services = {"g": {"type": "gate", "source": {"count": 2, "pause": 0.001},
                      "validation": {"json_schema": {"type": "array"}}}}  # fmt: skip
    result = run_jobs(services, [("j", "g")])
    assert result.jobs[0].status is JobStatus.COMPLETED
    assert result.jobs[0].counts.invalid == 2
    assert result.exit_code() == 0
    assert result.exit_code(fail_on_invalid=True) == 1


class TurnstileConfig(BaseModel):
    gate: str


class TurnstileSource(Source):
    """One tiny file per job; fetching it waits until the test opens the service's gate.
    Counts jobs in progress (from build to close) to see how many run at once."""

    type_name = "turnstile"
    config_model = TurnstileConfig
    gates: dict[str, threading.Event] = {}
    lock = threading.Lock()
    started: list[str] = []
    running = 0
    peak = 0

    finished: list[str] = []

    def __init__(self, config: TurnstileConfig, job_id: str) -> None:
        self.config, self.job_id = config, job_id

    @classmethod
    def from_config(cls, config: TurnstileConfig, context: SourceContext) -> Self:
        with cls.lock:
            cls.started.append(context.job_id)
            cls.running += 1
            cls.peak = max(cls.peak, cls.running)
        return cls(config, context.job_id)

    def list_items(self) -> Iterator[RemoteItem]:
        yield RemoteItem(key="one.json", uri=f"turnstile://{self.config.gate}")

    def fetch(self, item: RemoteItem, dest: Path) -> None:
        TurnstileSource.gates[self.config.gate].wait(30)
        dest.write_bytes(b"{}")

    def close(self) -> None:
        with TurnstileSource.lock:
            TurnstileSource.running -= 1
            TurnstileSource.finished.append(self.job_id)


def test_jobs_of_one_service_wait_without_holding_a_worker(run_jobs: RunJobs) -> None:
    """max_workers=2; service A has three jobs, B one. B's job must start while A's first
    job runs: A's second job must not sit in the second slot waiting for the first."""
    SOURCE_TYPES.register("turnstile", TurnstileSource)
    TurnstileSource.gates = {"a": threading.Event(), "b": threading.Event()}
    TurnstileSource.started, TurnstileSource.finished = [], []
    TurnstileSource.running, TurnstileSource.peak = 0, 0
    TurnstileSource.gates["b"].set()
    seen_while_a1_ran: list[str] = []

    def watch() -> None:
        # Wait (at most 15 s) for B's job to finish (its gate is open) while A's first
        # job is held at its gate.
        pause = threading.Event()
        for _ in range(300):
            with TurnstileSource.lock:
                if TurnstileSource.finished == ["b1"] and TurnstileSource.running == 1:
                    seen_while_a1_ran.extend(TurnstileSource.started)
                    break
            pause.wait(0.05)
        TurnstileSource.gates["a"].set()

    threading.Thread(target=watch, daemon=True).start()
    services = {s: {"type": "turnstile", "source": {"gate": s}} for s in ("a", "b")}
    jobs = [("a1", "a"), ("a2", "a"), ("a3", "a"), ("b1", "b")]
    result = run_jobs(services, jobs, max_workers=2)
    assert sorted(seen_while_a1_ran) == ["a1", "b1"]  # B ran beside A's first job alone
    assert TurnstileSource.peak <= 2
    assert [j for j in TurnstileSource.started if j.startswith("a")] == ["a1", "a2", "a3"]
    assert [j.status for j in result.jobs] == [JobStatus.COMPLETED] * 4
