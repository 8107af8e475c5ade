"""Schedules: cron slots in a time zone, what runs at start-up, never two jobs of one service
at once — all on a fake clock — and `module-system serve` running a real job and the dashboard."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from module_system.config import load_registry
from module_system.config.schedule import ScheduleConfig
from module_system.demo.servers import free_port
from module_system.errors import ConfigError
from module_system.scheduler import Scheduler
from module_system.scheduler.serve import ServeOptions, job_launcher, last_runs
from module_system.state import StateStore
from tests.helpers import list_keys, write_registry

HOURLY = ScheduleConfig(cron="0 * * * *")
START = datetime(2026, 11, 30, 12, 10, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        return stop.is_set()


class Recorder:
    """A launcher that records jobs; with ``hold`` set, each job runs until released."""

    def __init__(self, hold: bool = False) -> None:
        self.jobs: list[str] = []
        self.release = threading.Event()
        if not hold:
            self.release.set()

    def __call__(self, service_id: str, job_id: str) -> None:
        self.jobs.append(job_id)
        self.release.wait(30)


def scheduler(last_run: datetime | None, launch: Any, clock: FakeClock) -> Scheduler:
    return Scheduler({"sales": HOURLY}, launch, clock, {"sales": last_run})


def settle(s: Scheduler) -> None:
    """Wait (bounded) until no job of ``s`` is running."""
    deadline = time.monotonic() + 30
    while any(job.running for job in s.upcoming()):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_slots_follow_the_time_zone_across_daylight_saving() -> None:
    berlin = ScheduleConfig(cron="30 2 * * *", timezone="Europe/Berlin")
    # 02:30 does not exist on 29 March 2026 in Berlin: cron runs it at 03:00 CEST (01:00 UTC).
    assert berlin.next_after(datetime(2026, 3, 28, 12, tzinfo=UTC)) == datetime(
        2026, 3, 29, 1, 0, tzinfo=UTC
    )
    assert berlin.next_after(datetime(2026, 7, 1, tzinfo=UTC)) == datetime(
        2026, 7, 1, 0, 30, tzinfo=UTC
    )  # 02:30 CEST
    assert HOURLY.last_at_or_before(START.replace(minute=0)) == START.replace(minute=0)
    assert HOURLY.last_at_or_before(START) == START.replace(minute=0)


def test_a_missed_run_runs_once_at_start_up_not_once_per_slot() -> None:
    clock, launch = FakeClock(START), Recorder()
    s = scheduler(START - timedelta(hours=5), launch, clock)  # five slots missed
    assert s.tick() == ["sales-20261130T121000Z"]
    settle(s)
    assert s.tick() == []
    clock.advance(minutes=49)  # 12:59
    assert s.tick() == []
    clock.advance(minutes=1)  # 13:00
    assert s.tick() == ["sales-20261130T130000Z"]
    settle(s)
    assert launch.jobs == ["sales-20261130T121000Z", "sales-20261130T130000Z"]


def test_no_run_at_start_up_when_the_last_slot_was_served() -> None:
    clock = FakeClock(START)
    s = scheduler(START.replace(minute=0, second=5), Recorder(), clock)
    assert s.tick() == []
    assert s.upcoming()[0].next_at == START.replace(hour=13, minute=0)


def test_a_service_that_never_ran_waits_for_its_first_slot() -> None:
    clock = FakeClock(START)
    s = scheduler(None, Recorder(), clock)
    assert s.tick() == []
    clock.advance(minutes=50)
    assert s.tick() == ["sales-20261130T130000Z"]
    settle(s)


def test_never_two_jobs_of_one_service_at_once() -> None:
    clock, launch = FakeClock(START.replace(minute=0)), Recorder(hold=True)
    s = scheduler(START - timedelta(hours=2), launch, clock)
    assert s.tick() == ["sales-20261130T120000Z"]
    clock.advance(hours=1)  # 13:00 comes while the 12:00 job still runs
    assert s.tick() == []
    assert s.upcoming()[0].running
    launch.release.set()
    settle(s)
    clock.advance(hours=1)
    assert s.tick() == ["sales-20261130T140000Z"]
    settle(s)
    assert launch.jobs == ["sales-20261130T120000Z", "sales-20261130T140000Z"]


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ({"cron": "61 * * * *"}, "not a cron expression"),
        ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"cron": "0 2 * * *", "every": "day"}, "every"),
    ],
)
def test_bad_schedules_are_config_errors(
    tmp_path: Path, schedule: dict[str, Any], problem: str
) -> None:
    service = {"type": "s3", "source": {"bucket": "source-bucket"}, "schedule": schedule}
    path = write_registry(tmp_path / "r.yaml", {"bucket": "landing-bucket"}, {"svc": service})
    with pytest.raises(ConfigError) as caught:
        load_registry(path)
    assert problem in str(caught.value)
    assert "service 'svc'" in str(caught.value)


def scheduled_registry(tmp_path: Path, landing: dict[str, Any], source: str) -> Path:
    service = {
        "type": "s3",
        "source": {"bucket": source, "endpoint_url": landing["endpoint_url"]},
        "schedule": {"cron": "0 * * * *", "timezone": "Europe/Berlin"},
    }
    return write_registry(tmp_path / "registry.yaml", landing, {"hourly": service})


def test_a_due_service_runs_a_real_job(
    tmp_path: Path, s3: Any, landing: dict[str, Any], source_bucket: str, state_url: str
) -> None:
    s3.put_object(Bucket=source_bucket, Key="a.txt", Body=b"hello")
    registry = load_registry(scheduled_registry(tmp_path, landing, source_bucket))
    options = ServeOptions(state_url=state_url, log_dir=tmp_path / "logs")
    assert last_runs(registry, state_url) == {"hourly": None}
    clock = FakeClock(START.replace(minute=59, second=59))
    schedules = {"hourly": registry.services["hourly"].schedule}
    assert schedules["hourly"] is not None
    s = Scheduler(schedules, job_launcher(registry, options), clock, {"hourly": None})
    assert s.tick() == []
    clock.advance(seconds=1)
    assert s.tick() == ["hourly-20261130T130000Z"]
    s.close()  # waits for the job
    assert any(k.endswith("/a.txt") for k in list_keys(s3, landing["bucket"]))
    store = StateStore(state_url)
    try:
        (run,) = store.runs()
        assert run["description"] == "schedule: hourly"
        assert [j["job_id"] for j in store.jobs(run["run_id"])] == ["hourly-20261130T130000Z"]
    finally:
        store.close()
    assert last_runs(registry, state_url)["hourly"] is not None


def test_serve_runs_the_dashboard_beside_the_schedules(
    tmp_path: Path, landing: dict[str, Any], state_url: str
) -> None:
    registry = scheduled_registry(tmp_path, landing, "source-bucket")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "module_system", "serve", "--registry", str(registry),
         "--state-url", state_url, "--port", str(port), "--log-dir", str(tmp_path / "logs")],
        env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        answered = wait_for_page(f"http://127.0.0.1:{port}/", server)
        assert answered.status_code == 200
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    assert server.returncode == 0, output
    assert "schedule: hourly next at" in output


def wait_for_page(url: str, process: subprocess.Popen[str]) -> httpx.Response:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[0]
        try:
            return httpx.get(url, timeout=1)
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")
