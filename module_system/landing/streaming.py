"""A multipart upload (or server-side copy) made while the file is still downloading.

For a big new file the pipeline downloads, hashes, validates and lands at the same time:
:class:`StreamingUpload` uploads each part as soon as the download has written it;
:class:`StreamingCopy`, for an S3 source on the landing's endpoint, copies the parts from
the very object being downloaded. S3 shows nothing at the key until ``complete``, which
the pipeline calls only once the file is known to be valid; otherwise it calls ``abort``
and lands the file the usual way (in quarantine, or from disk if streaming failed). Parts
are sent straight from the file on disk with their SHA-256 computed here, so S3 checks
every part against our digest and memory stays flat; a copy's parts are checked against
ours of the downloaded bytes before completing (by the SHA-256 S3 reports for each), and
the whole copy's checksum after.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from module_system.aws import CopySource, translate_errors
from module_system.errors import ModuleSystemError, TerminalError, TransientError
from module_system.growing_file import WriteProgress, WriterFailed
from module_system.landing.checksums import FileDigest

log = logging.getLogger(__name__)
PARTS_IN_FLIGHT = 4
READ_SIZE = 1024 * 1024
MAX_COPY_PART = 5 * 1024 * 1024 * 1024  # S3's limit for one UploadPartCopy
# The landing's credentials may not read the source, or the server cannot copy parts.
COPY_REFUSALS = frozenset({"s3_accessdenied", "s3_notimplemented", "s3_501"})


class _PartShort(WriterFailed):
    def __init__(self, message: str, missing: int) -> None:
        super().__init__(message)
        self.missing = missing  # bytes of the part that never came


class FileSlice(io.RawIOBase):
    """``length`` bytes of a file from ``offset``: a seekable upload body read lazily."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__()
        self._file = path.open("rb")
        self._offset, self._length, self._position = offset, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def __len__(self) -> int:
        return self._length

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = max(0, min(self._length, base + offset))
        return self._position

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self._length - self._position)
        if want <= 0:
            return 0
        self._file.seek(self._offset + self._position)
        count = self._file.readinto(memoryview(buffer)[:want]) or 0
        self._position += count
        return count

    def close(self) -> None:
        self._file.close()
        super().close()


class StreamingUpload:
    """One multipart upload to ``key`` of a ``size``-byte file being written at ``path``."""

    transfer = "stream"  # how the manifest says the file landed
    activity = "uploading"
    description = "streamed upload"

    def __init__(
        self,
        lander: Any,
        key: str,
        size: int,
        extra: dict[str, Any],
        before_complete: Callable[[], None] = lambda: None,
    ) -> None:
        self.lander, self.key, self.size, self.extra = lander, key, size, extra
        self.before_complete = before_complete
        self.part_size = lander.part_size(size)
        self.upload_id: str | None = None
        self._parts: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.error: BaseException | None = None  # the first failure of the upload

    def feed(self, path: Path, progress: WriteProgress) -> FileDigest:
        """Upload every part as the download writes it (run in a side thread), and return
        the file's digest: each part is read and hashed once, for its own checksum and the
        whole file's. A failed part stops the sending, not the hashing; :meth:`complete`
        then raises and the file is uploaded the plain way."""
        whole = hashlib.sha256()
        part_digests: list[bytes] = []
        slots = threading.Semaphore(PARTS_IN_FLIGHT)
        futures: list[Future[None]] = []
        with ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="part") as pool:
            for number, offset in enumerate(range(0, self.size, self.part_size), start=1):
                length = min(self.part_size, self.size - offset)
                try:
                    part = _wait_and_hash(path, offset, length, progress, whole, self.size)
                except _PartShort as exc:  # short or failed download: the caller sees
                    self.error = exc  # the size differs and checks the file afterwards
                    hashed = offset + length - exc.missing
                    return FileDigest(
                        whole.hexdigest(), hashed, self.part_size, tuple(part_digests)
                    )
                part_digests.append(part)
                if number == 1:
                    self._start()
                if self.error is None and any(f.done() and f.exception() for f in futures):
                    self.error = next(f.exception() for f in futures if f.done() and f.exception())
                if self.error is not None:
                    continue  # keep hashing: the digest is still needed
                slots.acquire()
                checksum = base64.b64encode(part).decode()
                future = pool.submit(self._send, path, number, offset, length, checksum)
                future.add_done_callback(lambda _: slots.release())
                futures.append(future)
            for future in futures:
                if future.exception() is not None and self.error is None:
                    self.error = future.exception()
        return FileDigest(whole.hexdigest(), self.size, self.part_size, tuple(part_digests))

    def _start(self) -> None:
        bucket = self.lander.landing.bucket
        try:
            with translate_errors(self.lander.landing, bucket, self.key):
                created = self.lander.client.create_multipart_upload(
                    Bucket=bucket, Key=self.key, ChecksumAlgorithm="SHA256", **self.extra
                )
            self.upload_id = created["UploadId"]
        except ModuleSystemError as exc:
            self.error = exc

    def _send(self, path: Path, number: int, offset: int, length: int, checksum: str) -> None:
        bucket = self.lander.landing.bucket
        with (
            translate_errors(self.lander.landing, bucket, self.key),
            FileSlice(path, offset, length) as body,
        ):
            response = self.lander.client.upload_part(
                Bucket=bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number,
                Body=body, ContentLength=length, ChecksumSHA256=checksum,
            )  # fmt: skip
        with self._lock:
            self._parts[number] = {"PartNumber": number, "ETag": response["ETag"],
                                   "ChecksumSHA256": checksum}  # fmt: skip

    def complete(self, digest: FileDigest) -> None:
        """Make the object visible, then check S3's checksum of it against ours."""
        bucket = self.lander.landing.bucket
        if self.error is not None:
            raise self.error
        parts = [self._parts[n] for n in sorted(self._parts)]
        if len(parts) != -(-self.size // self.part_size):
            raise TerminalError(f"s3://{bucket}/{self.key}: only {len(parts)} parts were sent")
        self.before_complete()
        with translate_errors(self.lander.landing, bucket, self.key):
            self.lander.client.complete_multipart_upload(
                Bucket=bucket, Key=self.key, UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
            )  # fmt: skip
        self.upload_id = None
        try:
            self.lander.verify(self.key, digest.s3_checksum(multipart=True), digest.size)
        except ModuleSystemError:
            self.lander.delete(self.key)  # nothing unproven stays visible
            raise

    def abort(self) -> None:
        """Drop the parts sent so far; nothing ever appeared at the key."""
        if self.upload_id is None:
            return
        bucket = self.lander.landing.bucket
        try:
            self.lander.client.abort_multipart_upload(
                Bucket=bucket, Key=self.key, UploadId=self.upload_id
            )
        except Exception as exc:  # a lifecycle rule cleans up what this could not
            log.warning("could not abort the upload of s3://%s/%s: %s", bucket, self.key, exc)
        self.upload_id = None


def _wait_and_hash(
    path: Path, offset: int, length: int, progress: WriteProgress, whole: Any, size: int
) -> bytes:
    """Wait until the download has written the part; return its SHA-256 (raw) and feed
    the same bytes to the whole file's hash ``whole`` (parts come in order). A part that
    is the whole ``size``-byte file is hashed once."""
    alone = length == size
    digest = whole if alone else hashlib.sha256()
    with path.open("rb") as fh:
        fh.seek(offset)
        left = length
        while left:
            if progress.failed.is_set():
                raise _PartShort("the download failed; the upload stops", left)
            chunk = fh.read(min(READ_SIZE, left))
            if chunk:
                digest.update(chunk)
                if not alone:
                    whole.update(chunk)
                left -= len(chunk)
            elif progress.done.is_set():
                raise _PartShort(f"the file ended {left} bytes short of its listed size", left)
            else:
                progress.done.wait(0.005)
    return digest.digest()


class StreamingCopy(StreamingUpload):
    """A multipart copy to ``key`` of ``source``, the S3 object being downloaded, made
    while it downloads, hashes and validates. Each part is an ``UploadPartCopy`` of the
    listed version (``CopySourceIfMatch`` on its ETag). It is completed only once the file
    proved valid and each part's SHA-256, as S3 reports it, equals ours of the downloaded
    bytes; then the whole copy's is compared too (see :meth:`complete`).

    Parts are as big as S3 allows (5 GB), so most files are one part: the fewest requests,
    and the least work for servers that read the whole source for every part (moto)."""

    transfer = "copy"
    activity = "copying"
    description = "server-side copy"

    def __init__(
        self,
        lander: Any,
        source: CopySource,
        key: str,
        size: int,
        extra: dict[str, Any],
        before_complete: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(lander, key, size, extra, before_complete)
        self.source = source
        self.part_size = min(max(size, 1), MAX_COPY_PART)

    def feed(self, path: Path, progress: WriteProgress) -> FileDigest:
        """Start every part's copy (they need nothing from the download), then hash the
        file as it is written; return its digest once the copies have ended too."""
        self._start()
        ranges = list(enumerate(range(0, self.size, self.part_size), start=1))
        with ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="part-copy") as pool:
            futures = [] if self.error is not None else [
                pool.submit(self._copy_part, number, offset) for number, offset in ranges
            ]  # fmt: skip
            whole, part_digests, hashed = hashlib.sha256(), [], 0
            try:
                for _, offset in ranges:
                    length = min(self.part_size, self.size - offset)
                    part_digests.append(
                        _wait_and_hash(path, offset, length, progress, whole, self.size)
                    )
                    hashed = offset + length
            except _PartShort as exc:  # the caller sees the size differ and checks afterwards
                self.error, hashed = exc, hashed + length - exc.missing
                for future in futures:
                    future.cancel()
            for future in futures:
                if not future.cancelled() and future.exception() and self.error is None:
                    self.error = future.exception()
        return FileDigest(whole.hexdigest(), hashed, self.part_size, tuple(part_digests))

    def complete(self, digest: FileDigest) -> None:
        """As for an upload, but first each part's checksum, where S3 reports it (S3 does;
        moto does not), is compared with ours of the same bytes, so that on S3 a copy of
        other bytes never appears; the whole copy's is compared after completing."""
        for number, part in self._parts.items():
            reported = part.get("ChecksumSHA256")
            ours = base64.b64encode(digest.part_digests[number - 1]).decode()
            if reported is not None and reported != ours:
                raise TransientError(
                    f"s3://{self.lander.landing.bucket}/{self.key}: part {number} of the copy "
                    f"has SHA-256 {reported}, the validated bytes {ours}",
                    reason="checksum_mismatch",
                )
        super().complete(digest)

    def _copy_part(self, number: int, offset: int) -> None:
        bucket, source = self.lander.landing.bucket, self.source
        last = min(offset + self.part_size, self.size) - 1
        try:
            with translate_errors(self.lander.landing, bucket, self.key):
                result = self.lander.client.upload_part_copy(
                    Bucket=bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number,
                    CopySource={"Bucket": source.bucket, "Key": source.key},
                    CopySourceRange=f"bytes={offset}-{last}", CopySourceIfMatch=f'"{source.etag}"',
                )["CopyPartResult"]  # fmt: skip
        except ModuleSystemError as exc:
            if exc.reason in COPY_REFUSALS:  # the source is not ours to copy: upload from now on
                self.lander.refuse_copies(self.source)
            raise
        part = {"PartNumber": number, "ETag": result["ETag"]}
        if "ChecksumSHA256" in result:
            part["ChecksumSHA256"] = result["ChecksumSHA256"]
        with self._lock:
            self._parts[number] = part
