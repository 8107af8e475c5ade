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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from module_system.aws import CopySource
from module_system.errors import (
    FatalError,
    ItemVanished,
    JobCancelled,
    JobTimeout,
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
from module_system.pipeline.context import FileContext
from module_system.pipeline.overlap import Checked, fetch_while_checking
from module_system.pipeline.parts import LOCAL, PARTS, split_parts
from module_system.pipeline.records import RecordWriter, store_retried
from module_system.results import FileOutcome
from module_system.sources import RemoteItem, Source
from module_system.state.store import FileRecord
from module_system.validation.base import Verdict
from module_system.validation.suite import ValidationSuite

log = logging.getLogger("module_system.pipeline")
_SUFFIX = re.compile(r"(\.[A-Za-z0-9]{1,10}){1,2}$")
# New files at least this big are hashed and validated at once, on two cores.
PARALLEL_CHECK_BYTES = 16 * 1024 * 1024
T = TypeVar("T")
LOOKUP_BATCH = 500  # listed items whose prior state is looked up in one query
# A batch is looked up early once the listing has taken this long to fill it: items of a
# slow listing (API pages, a crawl) go to work at once instead of waiting for 499 more.
LOOKUP_WAIT = 0.02
SUPERSEDES = "supersedes a valid version"


class FileLander:
    """Moves the items of one job; :meth:`land_all` returns whether a stop request left
    items unstarted (they are not recorded, so the next run picks them up)."""

    def __init__(
        self,
        ctx: FileContext,
        source: Source,
        lander: S3Lander,
        suite: ValidationSuite,
        tmp: Path,
    ) -> None:
        self.ctx, self.source, self.lander, self.suite, self.tmp = ctx, source, lander, suite, tmp
        # landing key -> hash of the source URI that took it, to catch collisions; hashes
        # keep this small, and only uploaded files are in it.
        self._keys_taken: dict[str, int] = {}
        self._keys_lock = threading.Lock()
        self.records = RecordWriter(ctx.state, ctx.service_id, ctx.run_id, ctx.job_id)
        self._left_behind = False
        self.unknown_priors = 0  # listed files landed without knowing what landed before
        self._staged = itertools.count()

    def land_all(self) -> bool:
        try:
            self._land_items()
        finally:
            self.flush_records()
        return self._left_behind

    def _land_items(self) -> None:
        limit = self.ctx.concurrency
        # At most 2 x limit items taken from the listing and not yet landed. A semaphore
        # rather than wait(FIRST_COMPLETED) on the pending futures: that call costs a
        # waiter on every pending future for every item (a tenth of a small file's CPU).
        slots = threading.BoundedSemaphore(2 * limit)
        with ThreadPoolExecutor(limit, thread_name_prefix=f"{self.ctx.job_id}-file") as pool:
            for number, item, prior in self._listed_with_priors():
                if self.ctx.stop_requested():
                    self._left_behind = True
                    break
                self.ctx.counters.add(listed=1)
                self.ctx.progress.file_listed()
                if _unchanged_by_version(item, prior):  # no I/O: no need for a worker
                    self.land_one(item, None, prior)
                    continue
                path = self._temp_path(number, item)
                context = contextvars.copy_context()  # keeps the job's log context
                slots.acquire()
                future = pool.submit(context.run, self.land_one, item, path, prior)
                future.add_done_callback(lambda _: slots.release())

    def _listed_with_priors(self) -> Iterator[tuple[int, RemoteItem, FileRecord | None]]:
        """The listing, with what was landed before for each item, looked up in batches:
        memory stays bounded whatever the number of items the service has."""
        numbered = enumerate(self.source.list_items())
        for batch in timed_batches(numbered, LOOKUP_BATCH, LOOKUP_WAIT):
            known = self._landed_before({item.key for _, item in batch})
            for number, item in batch:
                yield number, item, self._usable(known.get(item.key))
            if self.ctx.stop_requested():
                return

    def _landed_before(self, keys: set[str]) -> dict[str, FileRecord]:
        if self.ctx.full_refresh:
            return {}
        if not self.unknown_priors:
            known = store_retried(
                lambda: self.ctx.state.landed_files(self.ctx.service_id, keys),
                self.ctx.retrier.cancel, "read",
            )  # fmt: skip
            if known is not None:
                return known
            # Nothing is lost: every file lands, none over an object unproven. For the rest
            # of the job, since files of a failed lookup may still be landing.
            log.error(
                "state store unavailable: what landed before is unknown; the rest of the "
                "listing lands whole, each file as a replacement (proven before it replaces)"
            )
        self.unknown_priors += len(keys)
        return {}

    def _usable(self, prior: FileRecord | None) -> FileRecord | None:
        # Landed under another prefix (the registry's landing prefix changed): land again.
        if prior and not prior.landing_key.startswith(self.ctx.layout.root):
            return None
        return prior

    def _temp_path(self, number: int, item: RemoteItem) -> Path:
        # Temp names never come from the remote key, so no key can escape the temp dir.
        match = _SUFFIX.search(item.key.rsplit("/", 1)[-1])
        return self.tmp / f"{number:08d}{match.group(0).lower() if match else ''}"

    def land_one(
        self, item: RemoteItem, path: Path | None, prior: FileRecord | None = None
    ) -> None:
        landed: FileRecord | None = None
        try:
            if self.ctx.stop_requested():
                self._left_behind = True
                return  # not started: not recorded, so the next run picks it up
            entry, landed = self._land(item, path, prior)
        except (JobTimeout, JobCancelled):
            self._left_behind = True  # a wait ended at the deadline or on Ctrl-C: the file
            return  # is not recorded, so the next run picks it up
        except ItemVanished as exc:
            entry = self._entry(item, FileOutcome.VANISHED, error=redact(str(exc)))
            log.warning("%s", entry.error)
        except FatalError as exc:
            self.ctx.abort(exc)
            entry = self._failed(item, exc)
        except ModuleSystemError as exc:
            entry = self._failed(item, exc)
        except Exception as exc:  # recorded as a failed file, never silently dropped
            log.exception("%s: unexpected error", item.uri)
            entry = self._failed_entry(item, f"internal error: {exc!r}", "internal")
        finally:
            if path is not None:
                path.unlink(missing_ok=True)
        self.ctx.manifest.add(entry)
        self._count(entry)
        if self.records.add(entry, landed):
            self.flush_records()

    def _failed(self, item: RemoteItem, exc: ModuleSystemError) -> ManifestEntry:
        entry = self._failed_entry(item, str(exc), exc.reason)
        log.error("%s: %s", item.uri, entry.error)
        return entry

    def _failed_entry(self, item: RemoteItem, error: str, reason: str) -> ManifestEntry:
        return self._entry(
            item, FileOutcome.FAILED, error=redact(error), details={"reason": reason}
        )

    def _count(self, entry: ManifestEntry) -> None:
        outcome = entry.outcome
        nbytes = 0
        if outcome in (FileOutcome.LANDED, FileOutcome.QUARANTINED):
            nbytes = entry.size or 0
            landed = outcome is FileOutcome.LANDED
            self.ctx.counters.add(uploaded=1, bytes=nbytes, valid=int(landed),
                                  invalid=int(not landed))  # fmt: skip
        else:
            self.ctx.counters.add(**{outcome.value: 1})
        self.ctx.progress.file_finished(outcome, nbytes)

    def _land(
        self, item: RemoteItem, path: Path | None, prior: FileRecord | None
    ) -> tuple[ManifestEntry, FileRecord | None]:
        if item.extra.get("skip_reason"):  # seen, not for landing (a crawl's non-HTML response)
            return self._entry(item, FileOutcome.IGNORED), None
        if prior is not None and _unchanged_by_version(item, prior):
            return self._unchanged(item, prior), None
        assert path is not None  # only unchanged items are handled without a temp file
        checked = self._fetch_and_check(item, path, prior)
        digest = checked.digest
        if prior and prior.sha256 == digest.sha256_hex:  # same bytes, new version stamp
            record = self._record(item, prior.landing_key, digest, prior.verdict)
            return self._unchanged(item, prior), record
        verdict = checked.verdict or self.suite.validate(path, item.key)
        if not verdict.valid and PARTS in item.extra:  # a batch: its invalid parts land alone
            whole, item = item, split_parts(item, path, self.suite, self._land_apart)
            prior = prior if item.key == whole.key else None
            digest, verdict = self.lander.digest(path), self.suite.validate(path, item.key)
        copy = self.source.copy_source(item)
        transfer = checked.transfer
        key = checked.landed_key or self._key_for(item, verdict)
        if not checked.landed_key:
            transfer = self._land_file(item, path, key, digest, verdict, prior, copy)
        record = self._record(item, key, digest, _verdict_word(verdict))
        outcome = FileOutcome.LANDED if verdict.valid else FileOutcome.QUARANTINED
        log.debug("%s -> %s (%s)", item.uri, key, outcome.value)
        note = SUPERSEDES if prior and prior.verdict == "valid" and not verdict.valid else None
        details = (
            None
            if verdict.valid
            else {"validator": verdict.validator, "messages": [i.as_dict() for i in verdict.issues]}
        )
        entry = self._entry(item, outcome, sha256=digest.sha256_hex, landing_key=key,
                            verdict=_verdict_word(verdict), error_count=verdict.error_count,
                            size=digest.size, note=note, details=details,
                            transfer=transfer)  # fmt: skip
        return entry, record

    def _land_apart(self, part: RemoteItem, path: Path) -> None:
        """A part of a split batch (see :mod:`.parts`), landed as an item of its own."""
        self.ctx.counters.add(listed=1)
        self.ctx.progress.file_listed()
        self.land_one(part, path)

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
        if item.extra.get(LOCAL):  # a part of a split batch: its bytes are in ``path``
            return Checked(self.lander.digest(path), None)
        tries = itertools.count()

        def attempt() -> Checked | None:
            if overlap and next(tries) == 0:
                fetch = functools.partial(self._fetch, item, path)
                stream = self._stream_for(item)
                return fetch_while_checking(fetch, item, path, self.lander, self.suite, stream)
            self._fetch(item, path)
            return None

        checked = self.ctx.retrier.call(attempt, f"fetch {item.uri}")
        self.ctx.counters.add(fetched=1)
        return checked or Checked(*self._digest_and_validate(item, path, prior))

    def _stream_for(self, item: RemoteItem) -> StreamingUpload | None:
        if not self.lander.streams(item.size) or item.size is None:
            return None
        if self.ctx.full_refresh or self.unknown_priors > 0:
            # An object may be at the key: a streamed upload would replace it before it is
            # proven. The file is still hashed and validated as it downloads, and then lands
            # through a staging key (see _land_file).
            return None
        key = self.ctx.layout.valid_key(item.key)
        metadata = self._metadata(item, "valid")
        claim = functools.partial(self._claim, key, item)  # only once the file proved valid
        copy = self.source.listed_copy_source(item)
        if copy is not None and self.lander.copies(copy, item.size, replacing=False):
            return self.lander.streaming_copy(copy, key, item.size, metadata, claim)
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

    def _key_for(self, item: RemoteItem, verdict: Verdict) -> str:
        layout = self.ctx.layout
        return layout.valid_key(item.key) if verdict.valid else layout.quarantine_key(item.key)

    def _land_file(
        self,
        item: RemoteItem,
        path: Path,
        key: str,
        digest: FileDigest,
        verdict: Verdict,
        prior: FileRecord | None,
        copy: CopySource | None,
    ) -> str:
        """Land the validated bytes at ``key``; return how: ``copy`` (server-side, from the
        source object the bytes came from) or ``upload``."""
        retrier = self.ctx.upload_retrier
        self._claim(key, item)
        metadata = self._metadata(item, _verdict_word(verdict))
        if not verdict.valid:  # the reason first: a quarantined file is never without one
            report = {"source_uri": item.uri, "landing_key": key, **verdict.as_dict()}
            retrier.call(lambda: self.lander.put_json(key + ERROR_SUFFIX, report), f"upload {key}")
        # An object may be at the key already (a changed file, a full refresh): replace it
        # only with proven bytes, by a checked copy or through a staging key.
        replacing = prior is not None or self.ctx.full_refresh or self.unknown_priors > 0
        if copy is not None and self.lander.copies(copy, digest.size, replacing):
            copied = retrier.call(lambda: self.lander.copy_in(copy, key, digest, metadata),
                                  f"copy {key}")  # fmt: skip
            if copied:
                return "copy"
        staging = (
            self.ctx.layout.staging_key(self.ctx.job_id, next(self._staged)) if replacing else None
        )
        retrier.call(lambda: self.lander.upload_file(path, key, digest, metadata, staging),
                     f"upload {key}")  # fmt: skip
        return "upload"

    def _metadata(self, item: RemoteItem, verdict: str) -> dict[str, str]:
        return {
            "source-uri": item.uri,
            "service-id": self.ctx.service_id,
            "job-id": self.ctx.job_id,
            "run-id": self.ctx.run_id,
            "verdict": verdict,
        }

    def _claim(self, key: str, item: RemoteItem) -> None:
        """Two different sources (URIs) must never land at one key of one job."""
        mine = hash(item.uri)
        with self._keys_lock:
            other = self._keys_taken.setdefault(key, mine)
        if other != mine:
            raise TerminalError(f"{item.uri}: lands on a key another item of this job took: "
                                f"{key}", reason="key_collision")  # fmt: skip

    def _record(self, item: RemoteItem, key: str, digest: FileDigest, verdict: str) -> FileRecord:
        return FileRecord(
            item_key=item.key, source_uri=item.uri, version=item.version, size=digest.size,
            sha256=digest.sha256_hex, verdict=verdict, landing_key=key,
            run_id=self.ctx.run_id, job_id=self.ctx.job_id,
        )  # fmt: skip

    def flush_records(self) -> None:
        """Write the outcomes buffered so far (see :mod:`.records`), and let the job
        publish its live counts at the same pace."""
        self.records.flush()
        self.ctx.on_flush()

    def _entry(self, item: RemoteItem, outcome: FileOutcome, **fields: Any) -> ManifestEntry:
        fields.setdefault("size", item.size)
        source_details = item.extra.get("details")
        own = fields.get("details")
        if source_details and own:
            own = {**source_details, **own}
        fields["details"] = own or source_details
        modified = item.modified.isoformat() if item.modified else None
        return ManifestEntry(key=item.key, source_uri=item.uri, outcome=outcome,
                             version=item.version, modified=modified, **fields)  # fmt: skip


def timed_batches(
    items: Iterable[T], size: int, wait: float, clock: Callable[[], float] = time.monotonic
) -> Iterator[list[T]]:
    """``items`` in lists of up to ``size``; a list ends early once ``wait`` seconds have
    passed since it was begun (checked as each item arrives)."""
    batch: list[T] = []
    started = clock()
    for item in items:
        batch.append(item)
        if len(batch) >= size or clock() - started >= wait:
            yield batch
            batch, started = [], clock()
    if batch:
        yield batch


def _unchanged_by_version(item: RemoteItem, prior: FileRecord | None) -> bool:
    return bool(prior and item.version and prior.version == item.version)


def _verdict_word(verdict: Verdict) -> str:
    return "valid" if verdict.valid else "invalid"
