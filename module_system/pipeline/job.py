"""One job from start to end: set-up, the file flow, the outcome, the manifest, the state.

Only :meth:`JobRun.run` catches broadly, to record the job's final state: a job never
raises, whatever happens to it.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from module_system.config.models import JobSpec, Registry, ServiceConfig
from module_system.errors import (
    FatalError,
    JobCancelled,
    JobTimeout,
    ModuleSystemError,
    TerminalError,
)
from module_system.landing.keys import LandingLayout
from module_system.landing.manifest import Manifest
from module_system.landing.uploader import S3Lander
from module_system.observability.logging import job_logging
from module_system.observability.redaction import redact
from module_system.pipeline.files import FileLander
from module_system.pipeline.options import NullProgress, Progress, RunOptions
from module_system.results import FileCounts, JobResult, JobStatus
from module_system.retry import Retrier
from module_system.sources import SOURCE_TYPES, Source, SourceContext
from module_system.state.store import StateStore
from module_system.validation.suite import ValidationSuite

log = logging.getLogger("module_system.pipeline")


class JobRun:
    """Runs one job; see :func:`run_job`."""

    def __init__(
        self,
        job: JobSpec,
        registry: Registry,
        state: StateStore,
        run_id: str,
        options: RunOptions = RunOptions(),
        cancel: threading.Event | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.job = job
        self.service: ServiceConfig = registry.services[job.service_id]
        self.registry = registry
        self.state = state
        self.run_id = run_id
        self.options = options
        self.cancel = cancel or threading.Event()
        self.progress = progress or NullProgress()
        self.source_cls: type[Source] = SOURCE_TYPES.get(self.service.type)
        self.result = JobResult(job.job_id, job.service_id, self.source_cls.type_name)
        self.layout = LandingLayout(
            registry.landing.prefix,
            self.source_cls.type_name,
            job.service_id,
            self.source_cls.landing_area,
        )
        self.manifest = Manifest()
        self.retrier = Retrier(self.service.retry, self.cancel)  # fetching from the source
        self.upload_retrier = Retrier(registry.landing.retry, self.cancel)  # landing
        self.items_left_behind = False  # set when a stop request left items unstarted
        self._fatal: FatalError | None = None
        self._counts_lock = threading.Lock()
        timeout = options.job_timeout or self.service.timeout
        self._deadline = time.monotonic() + timeout if timeout else None

    @property
    def module_name(self) -> str:
        return f"{self.source_cls.type_name}_module"

    def run(self) -> JobResult:
        result = self.result
        result.status, result.started_at = JobStatus.RUNNING, datetime.now(UTC)
        self._save()
        log.info("job started: service %s (%s)", self.job.service_id, self.service.type)
        lander: S3Lander | None = None
        try:
            lander = S3Lander(self.registry.landing)
            self._run_source(lander)
        except JobCancelled as exc:
            result.status, result.error = JobStatus.CANCELLED, str(exc)
        except JobTimeout as exc:
            result.status, result.error = JobStatus.TIMED_OUT, str(exc)
        except ModuleSystemError as exc:
            result.status, result.error = JobStatus.FAILED, redact(str(exc))
        except Exception as exc:  # an unexpected bug still ends as a recorded failure
            log.exception("job crashed")
            result.status, result.error = JobStatus.FAILED, redact(f"internal error: {exc!r}")
        finally:
            self._finish(lander)
        return result

    def _run_source(self, lander: S3Lander) -> None:
        context = SourceContext(
            service_id=self.job.service_id,
            job_id=self.job.job_id,
            run_id=self.run_id,
            retry=self.service.retry,
            cursors=self.state.cursors_for(self.job.service_id),
            logger=logging.getLogger(f"module_system.sources.{self.source_cls.type_name}"),
            cancel=self.cancel,
            full_refresh=self.options.full_refresh,
            extract=self.service.extract,
            retrier=self.retrier,
        )
        known = {} if self.options.full_refresh else self.state.landed_files(self.job.service_id)
        suite = ValidationSuite(self.service.validation)
        temp = tempfile.TemporaryDirectory(
            prefix=f"ms-{self.job.job_id}-", dir=self.options.temp_dir
        )
        with temp as tmp, self.source_cls.from_config(self.service.source, context) as source:
            FileLander(self, source, lander, suite, known, Path(tmp)).land_all()
            self._check_outcome()
            source.commit()

    def _check_outcome(self) -> None:
        counts = self.result.counts
        if self._fatal is not None:
            raise self._fatal
        if self.items_left_behind and self.cancel.is_set():
            raise JobCancelled("interrupted: stopped taking new files")
        if self.items_left_behind:
            raise JobTimeout(f"timed out after {counts.listed} files were listed")
        if counts.failed:
            first = next((e.error for e in self.manifest.entries if e.error), "")
            raise TerminalError(f"{counts.failed} of {counts.listed} files failed; first: {first}")
        if self.options.fail_on_invalid and counts.invalid:
            raise TerminalError(f"{counts.invalid} files quarantined (--fail-on-invalid)")
        self.result.status = JobStatus.COMPLETED

    def abort(self, error: FatalError) -> None:
        """Stop taking items: the job cannot succeed (e.g. access denied)."""
        if self._fatal is None:
            self._fatal = error

    def stop_requested(self) -> bool:
        deadline_passed = self._deadline is not None and time.monotonic() > self._deadline
        return self.cancel.is_set() or deadline_passed or self._fatal is not None

    def count(self, **increments: int) -> None:
        with self._counts_lock:
            for name, value in increments.items():
                setattr(self.result.counts, name, getattr(self.result.counts, name) + value)

    def _finish(self, lander: S3Lander | None) -> None:
        result = self.result
        result.retries = dict(self.retrier.retries + self.upload_retrier.retries)
        result.finished_at = datetime.now(UTC)
        if lander is not None:
            self._upload_manifest(lander)
            lander.close()
        self._save()
        level = logging.INFO if result.status is JobStatus.COMPLETED else logging.ERROR
        log.log(level, "job %s: %s", result.status.value, result.error or _summary(result.counts))

    def _upload_manifest(self, lander: S3Lander) -> None:
        key = self.layout.manifest_key(self.job.job_id)
        try:
            self.upload_retrier.call(
                lambda: lander.put_json(key, self.manifest.document(self.result, self.run_id)),
                f"manifest {key}",
            )
            self.result.manifest_key = key
        except ModuleSystemError as exc:
            log.error("could not upload the manifest %s: %s", key, exc)
            if self.result.status is JobStatus.COMPLETED:
                self.result.status = JobStatus.FAILED
                self.result.error = f"manifest upload failed: {exc}"

    def _save(self) -> None:
        """Record the job's state; a state-store outage is logged, never fatal to the batch."""
        r = self.result
        try:
            self.state.save_job(
                self.run_id,
                r.job_id,
                r.service_id,
                status=r.status.value,
                error=r.error,
                counts=r.as_dict()["counts"],
                manifest_key=r.manifest_key,
                started_at=r.started_at,
                finished_at=r.finished_at,
            )
        except Exception as exc:  # the job's result is still returned and reported
            log.error("could not record job %s in the state store: %s", r.job_id, redact(str(exc)))


def _summary(counts: FileCounts) -> str:
    return (
        f"{counts.listed} listed, {counts.valid} valid, {counts.invalid} quarantined, "
        f"{counts.skipped} unchanged, {counts.ignored} ignored, {counts.failed} failed, "
        f"{counts.bytes} bytes"
    )


def run_job(
    job: JobSpec,
    registry: Registry,
    state: StateStore,
    run_id: str,
    options: RunOptions = RunOptions(),
    cancel: threading.Event | None = None,
    progress: Progress | None = None,
) -> JobResult:
    """Run one job to its end and return its result; never raises for job failures."""
    job_run = JobRun(job, registry, state, run_id, options, cancel, progress)
    if options.log_dir is None:
        return job_run.run()
    with job_logging(options.log_dir, job.job_id, job.service_id, job_run.module_name) as path:
        job_run.result.log_file = str(path)
        return job_run.run()
