"""Decide which scheduled services are due, and run them: never two jobs of one service at
once, and a run missed while nothing was serving made up once at start-up (not once per
missed slot).

A slot that comes due while the service's previous job still runs is skipped with a
warning (like a Kubernetes CronJob with ``concurrencyPolicy: Forbid``); across processes
and machines the state store's service lease keeps the same promise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from module_system.config.models import Registry
from module_system.config.schedule import ScheduleConfig
from module_system.scheduler.clock import Clock, SystemClock

log = logging.getLogger(__name__)
MAX_IDLE = timedelta(seconds=60)  # look at the clock at least this often (clock changes)
_current: Scheduler | None = None

# Runs one job of a service: (service_id, job_id) -> None. Raising is logged, not fatal.
Launch = Callable[[str, str], None]


@dataclass(frozen=True)
class ScheduledJob:
    """What the dashboard shows for a scheduled service."""

    service_id: str
    cron: str
    timezone: str
    next_at: datetime
    running: bool


class Scheduler:
    """Due times per service, advanced on every :meth:`tick`."""

    def __init__(
        self,
        schedules: dict[str, ScheduleConfig],
        launch: Launch,
        clock: Clock | None = None,
        last_runs: dict[str, datetime | None] | None = None,
        max_parallel: int = 4,
    ) -> None:
        self.schedules = schedules
        self.clock = clock or SystemClock()
        self._launch = launch
        self._lock = threading.Lock()
        self._running: dict[str, Future[None]] = {}
        self._pool = ThreadPoolExecutor(max_parallel, thread_name_prefix="scheduled-job")
        now = self.clock.now()
        self._next = {sid: self._first_due(s, now, (last_runs or {}).get(sid))
                      for sid, s in schedules.items()}  # fmt: skip

    @staticmethod
    def _first_due(schedule: ScheduleConfig, now: datetime, last_run: datetime | None) -> datetime:
        """Now, when the latest slot passed after the service last ran; else the next slot.
        A service that never ran waits for its first slot."""
        latest = schedule.last_at_or_before(now)
        if last_run is not None and latest is not None and latest > last_run:
            return now
        return schedule.next_after(now)

    def tick(self) -> list[str]:
        """Start every due service that is not running; return the job ids started."""
        now = self.clock.now()
        started = []
        for service_id, due in sorted(self._next.items()):
            if due > now:
                continue
            self._next[service_id] = self.schedules[service_id].next_after(now)
            with self._lock:
                if service_id in self._running:
                    log.warning("schedule: %s is still running; the %s run is skipped",
                                service_id, due.isoformat(timespec="minutes"))  # fmt: skip
                    continue
                job_id = f"{service_id}-{now.strftime('%Y%m%dT%H%M%SZ')}"
                future = self._pool.submit(self._run, service_id, job_id)
                self._running[service_id] = future
            started.append(job_id)
        return started

    def _run(self, service_id: str, job_id: str) -> None:
        log.info("schedule: starting %s (job %s)", service_id, job_id)
        try:
            self._launch(service_id, job_id)
        except Exception:  # one failed run must not stop the schedule
            log.exception("schedule: job %s of %s failed to run", job_id, service_id)
        finally:
            with self._lock:
                self._running.pop(service_id, None)

    def seconds_to_next(self) -> float:
        now = self.clock.now()
        soonest = min(self._next.values(), default=now + MAX_IDLE)
        return max(0.0, min(soonest - now, MAX_IDLE).total_seconds())

    def upcoming(self) -> list[ScheduledJob]:
        with self._lock:
            running = set(self._running)
        return [ScheduledJob(sid, s.cron, s.timezone, self._next[sid], sid in running)
                for sid, s in sorted(self.schedules.items())]  # fmt: skip

    def run_until(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set, then wait for the running jobs to finish."""
        while not stop.is_set():
            self.tick()
            if self.clock.wait(self.seconds_to_next(), stop):
                break
        self.close()

    def close(self) -> None:
        with self._lock:
            running = list(self._running)
        if running:
            log.info("schedule: waiting for %s to finish", ", ".join(running))
        self._pool.shutdown(wait=True)


def current() -> Scheduler | None:
    """The scheduler ``module-system serve`` runs in this process, if any."""
    return _current


def serve_schedules(
    registry: Registry,
    launch: Launch,
    last_runs: dict[str, datetime | None],
    stop: threading.Event,
    clock: Clock | None = None,
) -> threading.Thread:
    """Start the scheduler of ``registry``'s scheduled services in a background thread."""
    global _current
    schedules = {sid: s.schedule for sid, s in registry.services.items() if s.schedule}
    scheduler = Scheduler(schedules, launch, clock, last_runs)
    _current = scheduler
    for job in scheduler.upcoming():
        log.info("schedule: %s next at %s (%s, %s)", job.service_id,
                 job.next_at.isoformat(timespec="minutes"), job.cron, job.timezone)  # fmt: skip
    thread = threading.Thread(target=scheduler.run_until, args=(stop,), name="scheduler")
    thread.start()
    return thread
