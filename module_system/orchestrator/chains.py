"""Which job to start next: jobs of one service run one after another, in batch order.

A service's next job is handed out only once its previous job has finished, so a job never
takes a worker slot just to wait for another one: ``--max-workers`` jobs really run at once.
"""

from __future__ import annotations

from collections import deque

from module_system.config.models import JobSpec


class ServiceChains:
    """Jobs grouped by service; services take turns in the order they become free."""

    def __init__(self, jobs: list[JobSpec]) -> None:
        self._waiting: dict[str, deque[JobSpec]] = {}
        for job in jobs:
            self._waiting.setdefault(job.service_id, deque()).append(job)
        self._free: deque[str] = deque(self._waiting)  # services with a job and none running

    def next_job(self) -> JobSpec | None:
        """The next job whose service has no job running, or None."""
        if not self._free:
            return None
        return self._waiting[self._free.popleft()].popleft()

    def finished(self, service_id: str) -> None:
        """The running job of ``service_id`` ended: its next job may start."""
        if self._waiting[service_id]:
            self._free.append(service_id)
