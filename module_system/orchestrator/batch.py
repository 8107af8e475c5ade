"""Run a batch: hand jobs to an executor, collect their results, handle interruption.

At most ``max_workers`` jobs run at once, and jobs of the same service run one after
another (:mod:`.chains`): a service's next job is submitted when its previous one ends, so
two jobs never land the same files at once and no worker slot is spent waiting.

Ctrl-C stops taking new jobs; running jobs finish the files they have started and end as
cancelled; jobs never started are recorded as cancelled too.
"""

from __future__ import annotations

import logging
import threading
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, wait
from datetime import UTC, datetime

from module_system.config.models import BatchFile, JobSpec, Registry
from module_system.errors import ModuleSystemError
from module_system.observability.redaction import redact
from module_system.orchestrator.chains import ServiceChains
from module_system.orchestrator.executor import BatchContext, JobExecutor, ThreadJobExecutor
from module_system.orchestrator.stats import BatchStats
from module_system.pipeline import RunOptions
from module_system.results import BatchResult, JobResult, JobStatus
from module_system.state.store import StateStore

log = logging.getLogger(__name__)
NOT_STARTED = "not started: batch interrupted"


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


def run_batch(
    registry: Registry,
    batch: BatchFile,
    state: StateStore,
    *,
    max_workers: int = 20,
    options: RunOptions = RunOptions(),
    stats: BatchStats | None = None,
    executor: JobExecutor | None = None,
    cancel: threading.Event | None = None,
    batch_file: str = "",
) -> BatchResult:
    """Run every job of ``batch`` and return their results (jobs never raise).

    Raises ``ConfigError`` before anything runs when ``executor`` cannot run the batch
    (e.g. a Dask cluster whose workers lack a plugin)."""
    context = BatchContext(registry, state, new_run_id(), options,
                           cancel or threading.Event(), stats or BatchStats())  # fmt: skip
    executor = executor or ThreadJobExecutor(max_workers)
    executor.start(context)
    try:
        return _run(context, batch, executor, max_workers, batch_file)
    finally:
        executor.shutdown()


def _run(
    context: BatchContext,
    batch: BatchFile,
    executor: JobExecutor,
    max_workers: int,
    batch_file: str,
) -> BatchResult:
    started = datetime.now(UTC)
    state, run_id = context.state, context.run_id
    state.start_run(run_id, batch.description, batch_file)
    log.info("run %s: %d jobs, %d at once", run_id, len(batch.jobs), max_workers)
    for _ in batch.jobs:
        context.stats.job_submitted()
    dispatcher = _Dispatcher(context, executor, ServiceChains(batch.jobs), max_workers)
    interrupted = dispatcher.run()
    results = [dispatcher.result_of(job) for job in batch.jobs]
    result = BatchResult(
        run_id, batch.description, results, started, datetime.now(UTC), interrupted
    )
    try:
        state.finish_run(run_id, "interrupted" if interrupted else _run_status(results))
    except Exception as exc:  # the results are still returned and reported
        log.error("could not record the end of run %s: %s", run_id, redact(str(exc)))
    return result


class _Dispatcher:
    """Submits jobs as slots and services free up, and collects what comes back."""

    def __init__(
        self, context: BatchContext, executor: JobExecutor, chains: ServiceChains, limit: int
    ) -> None:
        self.context, self.executor, self.chains, self.limit = context, executor, chains, limit
        self.running: dict[Future[JobResult], JobSpec] = {}
        self.results: dict[str, JobResult] = {}
        self._cancelled = False

    def run(self) -> bool:
        """Run every job; True when the batch was interrupted."""
        try:
            while True:
                self._start_more()
                if not self.running:
                    return self.context.cancel.is_set()
                # A timeout keeps the main thread responsive to KeyboardInterrupt.
                done, _ = wait(self.running, timeout=0.5, return_when=FIRST_COMPLETED)
                self._collect(done)
        except KeyboardInterrupt:
            log.warning("interrupted: no new jobs will start; running jobs finish their "
                        "current files")  # fmt: skip
            self.context.cancel.set()
        self._cancel_unstarted()
        self._drain()
        return True

    def _start_more(self) -> None:
        if self.context.cancel.is_set():
            self._cancel_unstarted()
            return
        while len(self.running) < self.limit and (job := self.chains.next_job()):
            self.running[self.executor.submit(job)] = job

    def _cancel_unstarted(self) -> None:
        if self._cancelled:
            return
        self._cancelled = True
        self.executor.cancel()
        for future in list(self.running):
            future.cancel()  # succeeds only for a job that has not started

    def _drain(self) -> None:
        """Wait for running jobs to stop; further Ctrl-Cs only say that we are waiting."""
        while self.running:
            try:
                done, _ = wait(self.running, timeout=0.5)
                self._collect(done)
            except KeyboardInterrupt:
                log.warning("still finishing %d running job(s); their current files "
                            "complete first", len(self.running))  # fmt: skip

    def _collect(self, done: set[Future[JobResult]]) -> None:
        for future in done:
            job = self.running.pop(future)
            if not future.cancelled():
                result = self._outcome(job, future)
                self.context.stats.job_finished(result.status)
                self.results[job.job_id] = result
            self.chains.finished(job.service_id)

    def _outcome(self, job: JobSpec, future: Future[JobResult]) -> JobResult:
        try:
            return future.result()
        except ModuleSystemError as exc:  # the executor lost the job (e.g. a cluster gone)
            error = redact(str(exc))
        except Exception as exc:  # run_job records its own failures; this is a last resort
            log.error("job %s crashed outside its own error handling", job.job_id,
                      exc_info=exc)  # fmt: skip
            error = redact(f"internal error: {exc!r}")
        return self._recorded(job, JobStatus.FAILED, error)

    def result_of(self, job: JobSpec) -> JobResult:
        """The job's result; a job that never started is recorded as cancelled."""
        if job.job_id in self.results:
            return self.results[job.job_id]
        self.context.stats.job_finished(JobStatus.CANCELLED, started=False)
        return self._recorded(job, JobStatus.CANCELLED, NOT_STARTED)

    def _recorded(self, job: JobSpec, status: JobStatus, error: str) -> JobResult:
        """The result of a job that could not record its own, recorded here."""
        result = JobResult(job.job_id, job.service_id, status=status, error=error)
        state, run_id = self.context.state, self.context.run_id
        try:
            state.save_job(run_id, job.job_id, job.service_id, status=status.value, error=error)
        except Exception as exc:
            log.error("could not record job %s: %s", job.job_id, redact(str(exc)))
        return result


def _run_status(results: list[JobResult]) -> str:
    return "completed" if all(r.status is JobStatus.COMPLETED for r in results) else "failed"
