"""Run a batch: submit every job to an executor, wait, and handle interruption.

Ctrl-C stops taking new jobs; running jobs finish the files they have started and end as
cancelled; jobs never started are recorded as cancelled too. Jobs of the same service run
one after another, so two jobs never land the same files at once.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import defaultdict
from concurrent.futures import FIRST_COMPLETED, Future, wait
from datetime import UTC, datetime

from module_system.config.models import BatchFile, JobSpec, Registry
from module_system.observability.redaction import redact
from module_system.orchestrator.executor import JobExecutor, ThreadJobExecutor
from module_system.orchestrator.stats import BatchStats
from module_system.pipeline import RunOptions, run_job
from module_system.results import BatchResult, JobResult, JobStatus
from module_system.state.store import StateStore

log = logging.getLogger(__name__)


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
    """Run every job of ``batch`` and return their results (jobs never raise)."""
    run_id = new_run_id()
    stats = stats or BatchStats()
    cancel = cancel or threading.Event()
    executor = executor or ThreadJobExecutor(max_workers)
    started = datetime.now(UTC)
    state.start_run(run_id, batch.description, batch_file)
    log.info("run %s: %d jobs, %d workers", run_id, len(batch.jobs), max_workers)
    service_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
    futures: dict[str, Future[JobResult]] = {}
    try:
        for job in batch.jobs:
            stats.job_submitted()
            lock = service_locks[job.service_id]
            futures[job.job_id] = executor.submit(
                _run_one, job, registry, state, run_id, options, cancel, stats, lock
            )
    except KeyboardInterrupt:  # Ctrl-C while queueing: what was queued is handled below
        cancel.set()
    interrupted = _wait_for(futures, cancel)
    executor.shutdown(cancel_pending=True)
    results = [_result_of(job, futures.get(job.job_id), state, run_id, stats)
               for job in batch.jobs]  # fmt: skip
    result = BatchResult(
        run_id, batch.description, results, started, datetime.now(UTC), interrupted
    )
    try:
        state.finish_run(run_id, "interrupted" if interrupted else _run_status(results))
    except Exception as exc:  # the results are still returned and reported
        log.error("could not record the end of run %s: %s", run_id, redact(str(exc)))
    return result


def _run_one(
    job: JobSpec,
    registry: Registry,
    state: StateStore,
    run_id: str,
    options: RunOptions,
    cancel: threading.Event,
    stats: BatchStats,
    service_lock: threading.Lock,
) -> JobResult:
    with service_lock:  # one job per service at a time
        stats.job_started()
        result = run_job(job, registry, state, run_id, options, cancel, stats)
        stats.job_finished(result.status)
        return result


def _wait_for(futures: dict[str, Future[JobResult]], cancel: threading.Event) -> bool:
    """Wait for every job; on Ctrl-C cancel what has not started and wait for the rest."""
    pending = set(futures.values())
    try:
        if cancel.is_set():
            raise KeyboardInterrupt  # interrupted while queueing
        while pending:
            # A timeout keeps the main thread responsive to KeyboardInterrupt.
            _, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
        return cancel.is_set()
    except KeyboardInterrupt:
        log.warning("interrupted: no new jobs will start; running jobs finish their current files")
        cancel.set()
        for future in futures.values():
            future.cancel()
        _drain([f for f in futures.values() if not f.cancelled()])
        return True


def _drain(running: list[Future[JobResult]]) -> None:
    """Wait for running jobs to stop; further Ctrl-Cs only say that we are waiting."""
    pending = set(running)
    while pending:
        try:
            _, pending = wait(pending, timeout=0.5)
        except KeyboardInterrupt:
            log.warning(
                "still finishing %d running job(s); their current files complete first",
                len(pending),
            )


def _result_of(
    job: JobSpec,
    future: Future[JobResult] | None,
    state: StateStore,
    run_id: str,
    stats: BatchStats,
) -> JobResult:
    if future is None or future.cancelled():
        result = JobResult(job.job_id, job.service_id, status=JobStatus.CANCELLED,
                           error="not started: batch interrupted")  # fmt: skip
        stats.job_finished(JobStatus.CANCELLED, started=False)
    else:
        try:
            return future.result()
        except Exception as exc:  # run_job records its own failures; this is a last resort
            log.exception("job %s crashed outside its own error handling", job.job_id)
            result = JobResult(job.job_id, job.service_id, status=JobStatus.FAILED,
                               error=redact(f"internal error: {exc!r}"))  # fmt: skip
    try:
        state.save_job(run_id, job.job_id, job.service_id, status=result.status.value,
                       error=result.error)  # fmt: skip
    except Exception as exc:
        log.error("could not record job %s: %s", job.job_id, redact(str(exc)))
    return result


def _run_status(results: list[JobResult]) -> str:
    return "completed" if all(r.status is JobStatus.COMPLETED for r in results) else "failed"
