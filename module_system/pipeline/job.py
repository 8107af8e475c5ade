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
from module_system.observability.lineage import JobLineage, source_uri
from module_system.observability.logging import job_logging
from module_system.observability.redaction import redact
from module_system.pipeline.context import Counters, FileContext
from module_system.pipeline.files import FileLander
from module_system.pipeline.options import NullProgress, Progress, RunOptions
from module_system.results import FileCounts, JobResult, JobStatus
from module_system.retry import Retrier
from module_system.sources import SOURCE_TYPES, Source, SourceContext
from module_system.state.lease import ServiceLease
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
        self.manifest = Manifest(options.temp_dir)
        timeout = options.job_timeout or self.service.timeout
        self._deadline = time.monotonic() + timeout if timeout else None
        # Retries never sleep past the deadline, and end at once on Ctrl-C.
        self.retrier = Retrier(self.service.retry, self.cancel, self._deadline)  # the source
        self.upload_retrier = Retrier(registry.landing.retry, self.cancel, self._deadline)
        self.items_left_behind = False  # set when a stop request left items unstarted
        self.counters = Counters(self.result.counts)
        self.lease = ServiceLease(state, job.service_id, run_id, job.job_id, options.lease_ttl)
        self._fatal: FatalError | None = None

    @property
    def module_name(self) -> str:
        return f"{self.source_cls.type_name}_module"

    def run(self) -> JobResult:
        result = self.result
        result.status, result.started_at = JobStatus.RUNNING, datetime.now(UTC)
        self._save()
        lineage = self._lineage()
        lineage.start()
        log.info("job started: service %s (%s)", self.job.service_id, self.service.type)
        lander: S3Lander | None = None
        leased = False
        try:
            self.lease.acquire(wait=self.options.wait_for_lease, cancel=self.cancel)
            leased = True
            self._close_dead_holders_job()
            lander = S3Lander(self.registry.landing)
            self._clear_leftovers(lander)
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
            if leased:
                self.lease.release()
            counts = result.counts
            lineage.finish(result.status, result.error, files=counts.uploaded, size=counts.bytes)
        return result

    def _lineage(self) -> JobLineage:
        """OpenLineage events of this job (sent only when OpenLineage is configured)."""
        source = source_uri(self.service.type, self.service.source)
        landing = f"s3://{self.registry.landing.bucket}/{self.layout.root}"
        return JobLineage.for_job(self.job.service_id, self.job.job_id, source, landing)

    def _close_dead_holders_job(self) -> None:
        """The lease was taken over from a job whose process died: it is not running any
        more, so the history (and the dashboard) stop showing it as such."""
        dead = self.lease.replaced
        if dead is None:
            return
        log.warning("%s; that job's process is gone: recorded as interrupted", dead.describe())
        try:
            self.state.mark_interrupted(dead.run_id, dead.job_id)
        except Exception as exc:  # history only: the job goes on
            log.error("could not record job %s as interrupted: %s", dead.job_id, exc)

    def _clear_leftovers(self, lander: S3Lander) -> None:
        removed = self.upload_retrier.call(
            lambda: lander.clear_leftovers(self.layout.root, self.layout.staging_root),
            "clear leftovers",
        )
        if removed:
            log.warning("removed %d leftovers of an interrupted earlier job", removed)

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
            deadline=self._deadline,
        )
        suite = ValidationSuite(self.service.validation)
        temp = tempfile.TemporaryDirectory(
            prefix=f"ms-{self.job.job_id}-", dir=self.options.temp_dir
        )
        with temp as tmp, self.source_cls.from_config(self.service.source, context) as source:
            files = FileLander(self._file_context(), source, lander, suite, Path(tmp))
            self.items_left_behind = files.land_all()
            if files.unknown_priors:
                self.result.notes.append(
                    f"state store unavailable: {files.unknown_priors} listed files were landed "
                    "without knowing what landed before (unchanged ones again, each proven "
                    "before it replaced its key)"
                )
            if files.records.unrecorded:
                self.result.notes.append(
                    f"state store unavailable: {files.records.unrecorded} landed files were "
                    "not recorded; the next run lands them again, to the same keys"
                )
            self._check_outcome()
            source.commit()

    def _file_context(self) -> FileContext:
        return FileContext(
            service_id=self.job.service_id, job_id=self.job.job_id, run_id=self.run_id,
            concurrency=self.service.concurrency, layout=self.layout, retrier=self.retrier,
            upload_retrier=self.upload_retrier, manifest=self.manifest,
            counters=self.counters, state=self.state, stop_requested=self.stop_requested,
            abort=self.abort, on_flush=self._save, progress=self.progress,
            full_refresh=self.options.full_refresh,
        )  # fmt: skip

    def _check_outcome(self) -> None:
        counts = self.result.counts
        if self._fatal is not None:
            raise self._fatal
        if self.items_left_behind and self.cancel.is_set():
            raise JobCancelled("interrupted: stopped taking new files")
        if self.items_left_behind:
            raise JobTimeout(f"timed out after {counts.listed} files were listed")
        if counts.failed:
            first = self.manifest.first_error or ""
            raise TerminalError(f"{counts.failed} of {counts.listed} files failed; first: {first}")
        if self.options.fail_on_invalid and counts.invalid:
            raise TerminalError(f"{counts.invalid} files quarantined (--fail-on-invalid)")
        self.result.status = JobStatus.COMPLETED

    def abort(self, error: FatalError) -> None:
        """Stop taking items: the job cannot succeed (e.g. access denied)."""
        if self._fatal is None:
            self._fatal = error

    def stop_requested(self) -> bool:
        if self.lease.lost.is_set():
            self.abort(FatalError(f"lost the lease of service {self.job.service_id}",
                                  reason="lease_lost"))  # fmt: skip
        deadline_passed = self._deadline is not None and time.monotonic() > self._deadline
        return self.cancel.is_set() or deadline_passed or self._fatal is not None

    def _finish(self, lander: S3Lander | None) -> None:
        result = self.result
        result.retries = dict(self.retrier.retries + self.upload_retrier.retries)
        result.finished_at = datetime.now(UTC)
        if lander is not None:
            self._upload_manifest(lander)
            lander.close()
        self.manifest.close()
        self._save()
        level = logging.INFO if result.status is JobStatus.COMPLETED else logging.ERROR
        log.log(level, "job %s: %s", result.status.value, result.error or _summary(result.counts))

    def _upload_manifest(self, lander: S3Lander) -> None:
        key = self.layout.manifest_key(self.job.job_id)
        try:
            with tempfile.TemporaryDirectory(dir=self.options.temp_dir) as tmp:
                path = Path(tmp) / "manifest.json"
                with path.open("wb") as out:
                    self.manifest.write_document(self.result, self.run_id, out)
                digest = lander.digest(path)
                metadata = {"job-id": self.job.job_id, "run-id": self.run_id}
                self.upload_retrier.call(
                    lambda: lander.upload_file(path, key, digest, metadata), f"manifest {key}"
                )
            self.result.manifest_key = key
        except (ModuleSystemError, OSError) as exc:
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
                retries=dict(self.retrier.retries + self.upload_retrier.retries),
                source_type=r.source_type,
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
