"""A multipart upload fed while the file is still downloading.

For a big new file the pipeline downloads, hashes, validates and uploads at the same time:
this class uploads each part as soon as the download has written it. S3 shows nothing at
the key until :meth:`StreamingUpload.complete`, which the pipeline calls only once the
file is known to be valid; otherwise it calls :meth:`abort` and lands the file the usual
way (in quarantine, or by a plain upload if streaming failed). Parts are sent straight
from the file on disk with their SHA-256 computed here, so S3 checks every part against
our digest and memory stays flat.
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

from module_system.aws import translate_errors
from module_system.errors import ModuleSystemError, TerminalError
from module_system.growing_file import WriteProgress, WriterFailed
from module_system.landing.checksums import FileDigest

log = logging.getLogger(__name__)
PARTS_IN_FLIGHT = 4
READ_SIZE = 1024 * 1024


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

    def feed(self, path: Path, progress: WriteProgress) -> None:
        """Upload every part as the download writes it (run in a side thread)."""
        bucket = self.lander.landing.bucket
        with translate_errors(self.lander.landing, bucket, self.key):
            created = self.lander.client.create_multipart_upload(
                Bucket=bucket, Key=self.key, ChecksumAlgorithm="SHA256", **self.extra
            )
        self.upload_id = created["UploadId"]
        slots = threading.Semaphore(PARTS_IN_FLIGHT)
        with ThreadPoolExecutor(PARTS_IN_FLIGHT, thread_name_prefix="part") as pool:
            futures: list[Future[None]] = []
            for number, offset in enumerate(range(0, self.size, self.part_size), start=1):
                length = min(self.part_size, self.size - offset)
                checksum = _wait_and_hash(path, offset, length, progress)
                slots.acquire()
                if any(f.done() and f.exception() for f in futures):
                    break  # a part failed: stop sending; result() below raises it
                future = pool.submit(self._send, path, number, offset, length, checksum)
                future.add_done_callback(lambda _: slots.release())
                futures.append(future)
            for future in futures:
                future.result()

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


def _wait_and_hash(path: Path, offset: int, length: int, progress: WriteProgress) -> str:
    """Wait until the download has written the part, then return its base64 SHA-256."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        fh.seek(offset)
        left = length
        while left:
            if progress.failed.is_set():
                raise WriterFailed("the download failed; the upload stops")
            chunk = fh.read(min(READ_SIZE, left))
            if chunk:
                digest.update(chunk)
                left -= len(chunk)
            elif progress.done.is_set():
                raise WriterFailed(f"the file ended {left} bytes short of its listed size")
            else:
                progress.done.wait(0.005)
    return base64.b64encode(digest.digest()).decode()
