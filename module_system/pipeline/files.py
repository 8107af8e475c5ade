"""The per-item flow of one job: skip unchanged → fetch → hash and validate → land → record.

Items move ``concurrency`` at a time on a thread pool; the listing is consumed lazily and
at most twice that many items wait, so a listing of millions is never held at once.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import logging
import re
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from module_system.errors import (
    FatalError,
    ItemVanished,
    ModuleSystemError,
    TerminalError,
    TransientError,
)
from module_system.landing.checksums import FileDigest
from module_system.landing.keys import ERROR_SUFFIX
from module_system.landing.manifest import ManifestEntry
from module_system.landing.streaming import StreamingUpload
from module_system.landing.uploader import S3Lander
from module_system.observability.redaction import redact
from module_system.pipeline.overlap import Checked, fetch_while_checking
from module_system.results import FileOutcome
from module_system.sources import RemoteItem, Source
from module_system.state.store import FileRecord
from module_system.validation.base import Verdict
from module_system.validation.suite import ValidationSuite

if TYPE_CHECKING:
    from module_system.pipeline.job import JobRun

log = logging.getLogger("module_system.pipeline")
_SUFFIX = re.compile(r"(\.[A-Za-z0-9]{1,10}){1,2}$")
# New files at least this big are hashed and validated at once, on two cores.
PARALLEL_CHECK_BYTES = 16 * 1024 * 1024
RECORD_BATCH = 200  # landed files written to the state store per transaction
RECORD_FLUSH_SECONDS = 2.0  # ... or at least this often


class FileLander:
    """Moves the items of one job."""

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
        self._keys_taken: dict[str, str] = {}  # landing key -> item key, to catch collisions
        self._keys_lock = threading.Lock()
        self._records: list[FileRecord] = []  # landed, not yet written to the state store
        self._records_lock = threading.Lock()
        self._flush_due = time.monotonic() + RECORD_FLUSH_SECONDS

    def land_all(self) -> None:
        try:
            self._land_items()
        finally:
            self.flush_records()

    def _land_items(self) -> None:
        limit = self.job.service.concurrency
        pending: set[Future[None]] = set()
        with ThreadPoolExecutor(limit, thread_name_prefix=f"{self.job.job.job_id}-file") as pool:
            for number, item in enumerate(self.source.list_items()):
                if self.job.stop_requested():
                    self.job.items_left_behind = True
                    break
                self.job.count(listed=1)
                self.job.progress.file_listed()
                context = contextvars.copy_context()  # keeps the job's log context
                path = self._temp_path(number, item)
                pending.add(pool.submit(context.run, self.land_one, item, path))
                if len(pending) >= 2 * limit:
                    _, pending = wait(pending, return_when=FIRST_COMPLETED)
            wait(pending)

    def _temp_path(self, number: int, item: RemoteItem) -> Path:
        # Temp names never come from the remote key, so no key can escape the temp dir.
        match = _SUFFIX.search(item.key.rsplit("/", 1)[-1])
        return self.tmp / f"{number:08d}{match.group(0).lower() if match else ''}"

    def land_one(self, item: RemoteItem, path: Path) -> None:
        try:
            if self.job.stop_requested():
                self.job.items_left_behind = True
                return  # not started: not recorded, so the next run picks it up
            entry = self._land(item, path)
        except ItemVanished as exc:
            entry = self._entry(item, FileOutcome.VANISHED, error=redact(str(exc)))
            log.warning("%s", entry.error)
        except FatalError as exc:
            self.job.abort(exc)
            entry = self._entry(item, FileOutcome.FAILED, error=redact(str(exc)))
            log.error("%s: %s", item.uri, entry.error)
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
        nbytes = 0
        if outcome in (FileOutcome.LANDED, FileOutcome.QUARANTINED):
            nbytes = entry.size or 0
            landed = outcome is FileOutcome.LANDED
            self.job.count(uploaded=1, bytes=nbytes, valid=int(landed), invalid=int(not landed))
        else:
            self.job.count(**{outcome.value: 1})
        self.job.progress.file_finished(outcome, nbytes)

    def _land(self, item: RemoteItem, path: Path) -> ManifestEntry:
        if item.extra.get("skip_reason"):  # seen, not for landing (a crawl's non-HTML response)
            return self._entry(item, FileOutcome.IGNORED)
        prior = self._prior(item)
        if prior and item.version and prior.version == item.version:
            return self._unchanged(item, prior)
        checked = self._fetch_and_check(item, path, prior)
        digest = checked.digest
        if prior and prior.sha256 == digest.sha256_hex:  # same bytes, new version stamp
            self._record(item, prior.landing_key, digest.sha256_hex, prior.verdict, digest.size)
            return self._unchanged(item, prior)
        verdict = checked.verdict or self.suite.validate(path, item.key)
        key = checked.landed_key or self._upload(item, path, digest, verdict)
        self._record(item, key, digest.sha256_hex, _verdict_word(verdict), digest.size)
        outcome = FileOutcome.LANDED if verdict.valid else FileOutcome.QUARANTINED
        log.debug("%s -> %s (%s)", item.uri, key, outcome.value)
        return self._entry(item, outcome, sha256=digest.sha256_hex, landing_key=key,
                           verdict=_verdict_word(verdict), error_count=verdict.error_count,
                           size=digest.size)  # fmt: skip

    def _prior(self, item: RemoteItem) -> FileRecord | None:
        prior = self.known.get(item.key)
        # Landed under another prefix (the registry's landing prefix changed): land again.
        if prior and not prior.landing_key.startswith(self.job.layout.root):
            return None
        return prior

    def _unchanged(self, item: RemoteItem, prior: FileRecord) -> ManifestEntry:
        return self._entry(item, FileOutcome.SKIPPED, sha256=prior.sha256,
                           landing_key=prior.landing_key, verdict=prior.verdict)  # fmt: skip

    def _fetch_and_check(self, item: RemoteItem, path: Path, prior: FileRecord | None) -> Checked:
        """Fetch with retries. A big new file is hashed, validated and (if big enough for
        parts) uploaded while it downloads; only on the first try, since a retry may rewrite
        the file: then it is checked afterwards."""
        overlap = (
            prior is None
            and (item.size or 0) >= PARALLEL_CHECK_BYTES
            and self.source.writes_in_place(item)
        )
        tries = itertools.count()

        def attempt() -> Checked | None:
            if overlap and next(tries) == 0:
                fetch = functools.partial(self._fetch, item, path)
                stream = self._stream_for(item)
                return fetch_while_checking(fetch, item, path, self.lander, self.suite, stream)
            self._fetch(item, path)
            return None

        checked = self.job.retrier.call(attempt, f"fetch {item.uri}")
        self.job.count(fetched=1)
        return checked or Checked(*self._digest_and_validate(item, path, prior))

    def _stream_for(self, item: RemoteItem) -> StreamingUpload | None:
        if not self.lander.streams(item.size) or item.size is None:
            return None
        key = self.job.layout.valid_key(item.key)
        metadata = self._metadata(item, "valid")
        claim = functools.partial(self._claim, key, item)  # only once the file proved valid
        return self.lander.streaming_upload(key, item.size, metadata, before_complete=claim)

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
            raise TransientError(
                f"{item.uri}: fetched {got} bytes, expected {item.size}", reason="short_read"
            )

    def _upload(self, item: RemoteItem, path: Path, digest: FileDigest, verdict: Verdict) -> str:
        layout, retrier = self.job.layout, self.job.upload_retrier
        key = layout.valid_key(item.key) if verdict.valid else layout.quarantine_key(item.key)
        self._claim(key, item)
        metadata = self._metadata(item, _verdict_word(verdict))
        if not verdict.valid:  # the reason first: a quarantined file is never without one
            report = {"source_uri": item.uri, "landing_key": key, **verdict.as_dict()}
            retrier.call(lambda: self.lander.put_json(key + ERROR_SUFFIX, report), f"upload {key}")
        retrier.call(lambda: self.lander.upload_file(path, key, digest, metadata), f"upload {key}")
        return key

    def _metadata(self, item: RemoteItem, verdict: str) -> dict[str, str]:
        return {
            "source-uri": item.uri,
            "service-id": self.job.job.service_id,
            "job-id": self.job.job.job_id,
            "run-id": self.job.run_id,
            "verdict": verdict,
        }

    def _claim(self, key: str, item: RemoteItem) -> None:
        """Two items of one job must never overwrite each other's landing key."""
        with self._keys_lock:
            other = self._keys_taken.setdefault(key, item.key)
        if other != item.key:
            raise TerminalError(f"{item.uri}: lands on the same key as {other!r}: {key}")

    def _record(self, item: RemoteItem, key: str, sha: str, verdict: str, size: int) -> None:
        record = FileRecord(
            item_key=item.key, source_uri=item.uri, version=item.version, size=size,
            sha256=sha, verdict=verdict, landing_key=key,
            run_id=self.job.run_id, job_id=self.job.job.job_id,
        )  # fmt: skip
        with self._records_lock:
            self._records.append(record)
            due = len(self._records) >= RECORD_BATCH or time.monotonic() > self._flush_due
        if due:
            self.flush_records()

    def flush_records(self) -> None:
        """Write the landed files recorded so far. In batches: one transaction per file
        would make the state store the bottleneck of a job of many small files. A crash
        before a flush only means those files land again (to the same keys) next run."""
        with self._records_lock:
            records, self._records = self._records, []
            self._flush_due = time.monotonic() + RECORD_FLUSH_SECONDS
        if records:
            self.job.state.record_files(self.job.job.service_id, records)

    def _entry(self, item: RemoteItem, outcome: FileOutcome, **fields: Any) -> ManifestEntry:
        fields.setdefault("size", item.size)
        fields.setdefault("details", item.extra.get("details"))
        modified = item.modified.isoformat() if item.modified else None
        return ManifestEntry(key=item.key, source_uri=item.uri, outcome=outcome,
                             version=item.version, modified=modified, **fields)  # fmt: skip


def _verdict_word(verdict: Verdict) -> str:
    return "valid" if verdict.valid else "invalid"
