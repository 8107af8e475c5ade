"""Where jobs run: a local thread pool (the default) or a Dask cluster
(:mod:`module_system.orchestrator.dask`).

The batch runner gives an executor the batch's context once (:meth:`JobExecutor.start`),
then one job at a time. Everything needed to run a job elsewhere (the job, the registry,
the state store's URL, the run id, the options) is plain data; live objects (the state
store's engine, the cancel flag, the statistics) stay with the runner and each executor
bridges them to where its jobs run.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from module_system.config.models import JobSpec, Registry
from module_system.orchestrator.stats import BatchStats
from module_system.pipeline import RunOptions, run_job
from module_system.results import JobResult
from module_system.state.store import StateStore


@dataclass(frozen=True)
class BatchContext:
    """What every job of one batch shares."""

    registry: Registry
    state: StateStore
    run_id: str
    options: RunOptions
    cancel: threading.Event  # set on Ctrl-C: jobs stop taking new files
    stats: BatchStats


class JobExecutor(Protocol):
    def start(self, batch: BatchContext) -> None:
        """Get ready to run jobs of ``batch``; raise ``ConfigError`` when this executor
        cannot run them (nothing has run yet)."""

    def submit(self, job: JobSpec) -> Future[JobResult]:
        """Start ``job``. The runner submits only as many jobs as it wants running at once.
        The future counts as running once the job has started where it runs (and the
        executor has called ``stats.job_started()``), so cancelling it succeeds only for
        a job that has not started. A future that ends without a result raises a
        :class:`~module_system.errors.ModuleSystemError` saying why."""

    def cancel(self) -> None:
        """Ctrl-C: tell running jobs to stop taking new files (``batch.cancel`` is set)."""

    def shutdown(self) -> None:
        """Release what :meth:`start` took; every submitted future has ended by now."""


class ThreadJobExecutor:
    """Jobs on a local thread pool of ``max_workers`` threads."""

    def __init__(self, max_workers: int = 20) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="job")
        self._batch: BatchContext | None = None

    def start(self, batch: BatchContext) -> None:
        self._batch = batch

    def submit(self, job: JobSpec) -> Future[JobResult]:
        assert self._batch is not None, "start() first"
        return self._pool.submit(_run_here, self._batch, job)

    def cancel(self) -> None:
        pass  # the jobs see the batch's cancel event themselves

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _run_here(batch: BatchContext, job: JobSpec) -> JobResult:
    batch.stats.job_started()
    return run_job(job, batch.registry, batch.state, batch.run_id, batch.options,
                   batch.cancel, batch.stats)  # fmt: skip
