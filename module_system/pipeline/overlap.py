"""Fetch, hash, validate and upload a big file at the same time.

The download writes the temp file; side threads follow it (see
:mod:`module_system.growing_file`): one hashes, one validates, and, for a file big enough
to go in parts, one streams the parts to the landing bucket as a multipart upload that
stays invisible until completed. It is completed only when the file proves valid; an
invalid file's upload is aborted and the file lands in quarantine the usual way.

Only validators that read through ``open_binary`` can follow a growing file (they say so
with ``reads_growing_files``); when a service has another, its files are validated once
the download is complete (hashing and uploading still overlap the download).
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from module_system.growing_file import WriteProgress, following
from module_system.landing.checksums import FileDigest
from module_system.landing.streaming import StreamingUpload
from module_system.landing.uploader import S3Lander
from module_system.sources import RemoteItem
from module_system.validation.base import Verdict
from module_system.validation.suite import ValidationSuite

log = logging.getLogger("module_system.pipeline")
T = TypeVar("T")


@dataclass(frozen=True)
class Checked:
    digest: FileDigest
    verdict: Verdict | None  # None: not validated yet
    landed_key: str | None = None  # set when the streamed upload or copy landed the file
    transfer: str = "upload"  # how it landed there (see StreamingUpload.transfer)


def fetch_while_checking(
    fetch: Callable[[], None],
    item: RemoteItem,
    path: Path,
    lander: S3Lander,
    suite: ValidationSuite,
    stream: StreamingUpload | None,
) -> Checked | None:
    """Run ``fetch`` (which writes ``path``) while hashing, validating and streaming it.

    Returns None when the followers did not see the file the fetch wrote (it was replaced
    rather than written in place): the caller then checks the finished file.
    """
    progress = WriteProgress()
    path.touch()
    inode = path.stat().st_ino
    follows = suite.can_check_growing_files
    log.debug("%s: hashing%s%s while it downloads", item.uri, ", validating" if follows else "",
              f" and {stream.activity}" if stream else "")  # fmt: skip
    validate = functools.partial(suite.validate, path, item.key)
    try:
        with ThreadPoolExecutor(3, thread_name_prefix="check") as side:
            # A streamed upload hashes each part once, for the part and the whole file.
            hashing = (lambda: stream.feed(path, progress)) if stream else (
                lambda: lander.digest(path, item.size))  # fmt: skip
            digest = side.submit(_follow(path, progress, hashing))
            streamed = digest if stream else None
            verdict = side.submit(_follow(path, progress, validate)) if follows else None
            _run_writer(fetch, progress)
            # a validator that needs the whole file has it now (the upload may go on)
            checked = Checked(digest.result(), verdict.result() if verdict else validate())
        written = path.stat()
        if written.st_ino != inode or written.st_size != checked.digest.size:
            log.warning("%s: the file was replaced while it downloaded; checking it afterwards",
                        item.uri)  # fmt: skip
            return None
        if stream is not None and streamed is not None and checked.verdict:
            return _complete(stream, streamed, checked)
        return checked
    finally:
        if stream is not None:
            stream.abort()  # no-op once completed; else nothing ever appears at its key


def _run_writer(fetch: Callable[[], None], progress: WriteProgress) -> None:
    try:
        fetch()
    except BaseException:
        progress.failed.set()
        raise
    finally:
        progress.done.set()


def _complete(stream: StreamingUpload, streamed: Future[FileDigest], checked: Checked) -> Checked:
    assert checked.verdict is not None
    if not checked.verdict.valid:
        return checked  # aborted by the caller; the file goes to quarantine
    try:
        streamed.result()
        stream.complete(checked.digest)
    except Exception as exc:  # streaming only saves time: land the file the plain way
        log.warning("s3 key %s: the %s during the download failed (%s); landing it from disk",
                    stream.key, stream.description, exc)  # fmt: skip
        return checked
    return Checked(checked.digest, checked.verdict, stream.key, stream.transfer)


def _follow(path: Path, progress: WriteProgress, check: Callable[[], T]) -> Callable[[], T]:
    context = contextvars.copy_context()  # keeps the job's log context in the side thread

    def run() -> T:
        with following(path, progress):
            return check()

    return lambda: context.run(run)
