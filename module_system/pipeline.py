"""The Fetch → Validate → Upload flow every source shares.

For one job: the source lists items → the state store says which are unchanged → each
new or changed item is fetched to a temp file → the validators give a verdict → the file
lands in the validated area or in quarantine (with an ``.error.json``) → the state store
records it. Items move ``service.concurrency`` at a time. Finally the manifest is
uploaded and the source may commit (e.g. an API cursor) if nothing failed.
"""

from __future__ import annotations

import contextvars
import logging
import re
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from module_system.config.models import JobSpec, Registry, ServiceConfig
from module_system.errors import (
    ItemVanished,
    JobCancelled,
    JobTimeout,
    ModuleSystemError,
    TerminalError,
    TransientError,
)
from module_system.landing.checksums import FileDigest
from module_system.landing.keys import ERROR_SUFFIX, LandingLayout
from module_system.landing.manifest import Manifest, ManifestEntry
from module_system.landing.uploader import S3Lander
from module_system.observability.logging import job_logging
from module_system.observability.redaction import redact
from module_system.results import FileCounts, FileOutcome, JobResult, JobStatus
from module_system.retry import Retrier
from module_system.sources import SOURCE_TYPES, RemoteItem, Source, SourceContext
from module_system.state.store import FileRecord, StateStore
from module_system.validation.base import Verdict
from module_system.validation.suite import ValidationSuite

log = logging.getLogger(__name__)
PARALLEL_CHECK_BYTES = 16 * 1024 * 1024
_SUFFIX = re.compile(r"(\.[A-Za-z0-9]{1,10}){1,2}$")


@dataclass(frozen=True)
class RunOptions:
    """Switches that apply to every job of a run."""

    full_refresh: bool = False
    fail_on_invalid: bool = False
    job_timeout: float | None = None
    temp_dir: Path | None = None
    log_dir: Path | None = None  # per-job log files go here when set


class Progress(Protocol):
    """Receives live counts (the monitor implements it)."""

    def file_listed(self) -> None: ...

    def file_finished(self, outcome: FileOutcome, nbytes: int) -> None: ...


class NullProgress:
    def file_listed(self) -> None:
        pass

    def file_finished(self, outcome: FileOutcome, nbytes: int) -> None:
        pass


class JobRun:
    """Runs one job. Only :meth:`run` catches broadly, to record the job's final state."""

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
        self.retrier = Retrier(self.service.retry, self.cancel)
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
        )
        known = {} if self.options.full_refresh else self.state.landed_files(self.job.service_id)
        suite = ValidationSuite(self.service.validation)
        with (
            tempfile.TemporaryDirectory(
                prefix=f"ms-{self.job.job_id}-", dir=self.options.temp_dir
            ) as tmp,
            self.source_cls.from_config(self.service.source, context) as source,
        ):
            files = _FileLander(self, source, lander, suite, known, Path(tmp))
            files.land_all()
            self._check_outcome()
            source.commit()

    def _check_outcome(self) -> None:
        counts = self.result.counts
        if self.cancel.is_set():
            raise JobCancelled("interrupted: stopped taking new files")
        if self._deadline_passed():
            raise JobTimeout(f"timed out after {counts.listed} files were listed")
        if counts.failed:
            first = next((e.error for e in self.manifest.entries if e.error), "")
            raise TerminalError(f"{counts.failed} of {counts.listed} files failed; first: {first}")
        self.result.status = JobStatus.COMPLETED

    def _deadline_passed(self) -> bool:
        return self._deadline is not None and time.monotonic() > self._deadline

    def stop_requested(self) -> bool:
        return self.cancel.is_set() or self._deadline_passed()

    def count(self, **increments: int) -> None:
        with self._counts_lock:
            for name, value in increments.items():
                setattr(self.result.counts, name, getattr(self.result.counts, name) + value)

    def _finish(self, lander: S3Lander | None) -> None:
        result = self.result
        result.retries = dict(self.retrier.retries)
        result.finished_at = datetime.now(UTC)
        if lander is not None:
            self._upload_manifest(lander)
        self._save()
        level = logging.INFO if result.status is JobStatus.COMPLETED else logging.ERROR
        log.log(level, "job %s: %s", result.status.value, result.error or _summary(result.counts))

    def _upload_manifest(self, lander: S3Lander) -> None:
        key = self.layout.manifest_key(self.job.job_id)
        try:
            self.retrier.call(
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
        r = self.result
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


class _FileLander:
    """Moves the items of one job, ``concurrency`` at a time."""

    def __init__(
        self,
        job: JobRun,
        source: Source,
        lander: S3Lander,
        suite: ValidationSuite,
        known: dict[str, FileRecord],
        tmp: Path,
    ) -> None:
        self.job, self.source, self.lander, self.suite = job, source, lander, suite
        self.known, self.tmp = known, tmp

    def land_all(self) -> None:
        limit = self.job.service.concurrency
        pending: set[Future[None]] = set()
        with ThreadPoolExecutor(limit, thread_name_prefix=f"{self.job.job.job_id}-file") as pool:
            for number, item in enumerate(self.source.list_items()):
                if self.job.stop_requested():
                    break
                self.job.count(listed=1)
                self.job.progress.file_listed()
                context = contextvars.copy_context()
                pending.add(
                    pool.submit(context.run, self.land_one, item, self._temp_path(number, item))
                )
                if len(pending) >= 2 * limit:  # bounded: a huge listing is not queued at once
                    _, pending = wait(pending, return_when=FIRST_COMPLETED)
            wait(pending)

    def _temp_path(self, number: int, item: RemoteItem) -> Path:
        # Temp names never come from the remote key, so no key can escape the temp dir.
        match = _SUFFIX.search(item.key.rsplit("/", 1)[-1])
        return self.tmp / f"{number:08d}{match.group(0).lower() if match else ''}"

    def land_one(self, item: RemoteItem, path: Path) -> None:
        try:
            if self.job.stop_requested():
                return  # not started: not recorded, so the next run picks it up
            entry = self._land(item, path)
        except ItemVanished as exc:
            entry = self._entry(item, FileOutcome.VANISHED, error=redact(str(exc)))
            log.warning("%s", exc)
        except ModuleSystemError as exc:
            entry = self._entry(item, FileOutcome.FAILED, error=redact(str(exc)))
            log.error("%s: %s", item.uri, entry.error)
        except Exception as exc:  # recorded as a failed file, never silently dropped
            log.exception("%s: unexpected error", item.uri)
            entry = self._entry(item, FileOutcome.FAILED, error=redact(f"internal error: {exc!r}"))
        finally:
            path.unlink(missing_ok=True)
        self.job.manifest.add(entry)
        self._count(entry)

    def _count(self, entry: ManifestEntry) -> None:
        outcome = entry.outcome
        if outcome in (FileOutcome.LANDED, FileOutcome.QUARANTINED):
            nbytes = entry.size or 0
            self.job.count(
                uploaded=1,
                bytes=nbytes,
                valid=int(outcome is FileOutcome.LANDED),
                invalid=int(outcome is FileOutcome.QUARANTINED),
            )
        else:
            nbytes = 0
            self.job.count(**{outcome.value: 1})
        self.job.progress.file_finished(outcome, nbytes)

    def _land(self, item: RemoteItem, path: Path) -> ManifestEntry:
        if item.extra.get("skip_reason"):  # seen, not for landing (a crawl's non-HTML response)
            return self._entry(item, FileOutcome.IGNORED)
        prior = self.known.get(item.key)
        if prior and item.version and prior.version == item.version:
            return self._entry(
                item,
                FileOutcome.SKIPPED,
                sha256=prior.sha256,
                landing_key=prior.landing_key,
                verdict=prior.verdict,
            )
        self.job.retrier.call(lambda: self._fetch(item, path), f"fetch {item.uri}")
        self.job.count(fetched=1)
        digest, verdict = self._digest_and_validate(item, path, prior)
        if prior and prior.sha256 == digest.sha256_hex:  # same bytes, new version stamp
            self._record(item, prior.landing_key, digest.sha256_hex, prior.verdict, digest.size)
            return self._entry(
                item,
                FileOutcome.SKIPPED,
                sha256=prior.sha256,
                landing_key=prior.landing_key,
                verdict=prior.verdict,
            )
        verdict = verdict or self.suite.validate(path, item.key)
        key = self._upload(item, path, digest, verdict)
        self._record(item, key, digest.sha256_hex, _verdict_word(verdict), digest.size)
        outcome = FileOutcome.LANDED if verdict.valid else FileOutcome.QUARANTINED
        log.debug("%s -> %s (%s)", item.uri, key, outcome.value)
        return self._entry(
            item,
            outcome,
            sha256=digest.sha256_hex,
            landing_key=key,
            verdict=_verdict_word(verdict),
            error_count=verdict.error_count,
            size=digest.size,
        )

    def _digest_and_validate(
        self, item: RemoteItem, path: Path, prior: FileRecord | None
    ) -> tuple[FileDigest, Verdict | None]:
        """Hash first, so unchanged content skips validation; but for a big new file hash
        and validate at once (hashlib releases the GIL, so both cores work)."""
        if prior is not None or path.stat().st_size < PARALLEL_CHECK_BYTES:
            return self.lander.digest(path), None
        with ThreadPoolExecutor(1, thread_name_prefix="digest") as side:
            digest = side.submit(self.lander.digest, path)
            verdict = self.suite.validate(path, item.key)
            return digest.result(), verdict

    def _fetch(self, item: RemoteItem, path: Path) -> None:
        self.source.fetch(item, path)
        got = path.stat().st_size
        if item.size is not None and got != item.size:
            raise TransientError(f"{item.uri}: fetched {got} bytes, expected {item.size}")

    def _upload(self, item: RemoteItem, path: Path, digest: FileDigest, verdict: Verdict) -> str:
        layout, retrier = self.job.layout, self.job.retrier
        key = layout.valid_key(item.key) if verdict.valid else layout.quarantine_key(item.key)
        metadata = {
            "source-uri": item.uri,
            "service-id": self.job.job.service_id,
            "job-id": self.job.job.job_id,
            "run-id": self.job.run_id,
            "verdict": _verdict_word(verdict),
        }
        if not verdict.valid:  # the reason first: a quarantined file is never without one
            report = {"source_uri": item.uri, "landing_key": key, **verdict.as_dict()}
            retrier.call(lambda: self.lander.put_json(key + ERROR_SUFFIX, report), f"upload {key}")
        retrier.call(lambda: self.lander.upload_file(path, key, digest, metadata), f"upload {key}")
        return key

    def _record(self, item: RemoteItem, key: str, sha: str, verdict: str, size: int) -> None:
        record = FileRecord(
            item_key=item.key, source_uri=item.uri, version=item.version, size=size,
            sha256=sha, verdict=verdict, landing_key=key,
            run_id=self.job.run_id, job_id=self.job.job.job_id,
        )  # fmt: skip
        self.job.state.record_file(self.job.job.service_id, record)

    def _entry(self, item: RemoteItem, outcome: FileOutcome, **fields: Any) -> ManifestEntry:
        fields.setdefault("size", item.size)
        fields.setdefault("details", item.extra.get("details"))
        modified = item.modified.isoformat() if item.modified else None
        return ManifestEntry(
            key=item.key,
            source_uri=item.uri,
            outcome=outcome,
            version=item.version,
            modified=modified,
            **fields,
        )


def _verdict_word(verdict: Verdict) -> str:
    return "valid" if verdict.valid else "invalid"


def _summary(counts: FileCounts) -> str:
    return (
        f"{counts.listed} listed, {counts.valid} valid, {counts.invalid} quarantined, "
        f"{counts.skipped} unchanged, {counts.failed} failed, {counts.bytes} bytes"
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
