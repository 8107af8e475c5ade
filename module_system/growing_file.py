"""Read a file while another thread is still writing it.

The pipeline hashes and validates a big file *while* it downloads: both readers follow the
writer, waiting at the current end of the file until more bytes arrive or the writer says
it is done. Readers pick this up through :func:`open_following` (a context variable set by
the pipeline in the reading thread), so validators keep their plain ``open`` code path.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path

POLL_SECONDS = 0.005


class WriterFailed(Exception):
    """The writer gave up (e.g. the download failed); readers stop at once."""


@dataclass
class WriteProgress:
    """Signals from the writer: ``done`` (all bytes written) or ``failed``."""

    done: threading.Event = field(default_factory=threading.Event)
    failed: threading.Event = field(default_factory=threading.Event)


_following: ContextVar[tuple[Path, WriteProgress] | None] = ContextVar("following", default=None)


class GrowingFileReader(io.RawIOBase):
    """A raw reader that treats end-of-file as "not yet" until the writer is done."""

    def __init__(self, path: Path, progress: WriteProgress) -> None:
        super().__init__()
        self._file = path.open("rb", buffering=0)
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        while True:
            if self._progress.failed.is_set():
                raise WriterFailed("the download failed; stopped reading")
            done = self._progress.done.is_set()  # read the flag before the bytes
            count = self._file.readinto(buffer)
            if count or done:
                return count or 0
            self._progress.done.wait(POLL_SECONDS)

    def close(self) -> None:
        self._file.close()
        super().close()


@contextmanager
def following(path: Path, progress: WriteProgress) -> Iterator[None]:
    """Within this block (in this thread), :func:`open_following` of ``path`` follows the writer."""
    token = _following.set((path, progress))
    try:
        yield
    finally:
        _following.reset(token)


def is_following(path: Path) -> bool:
    """True while this thread reads ``path`` as it is being written (a big download)."""
    current = _following.get()
    return current is not None and current[0] == path


def open_following(path: Path) -> io.BufferedReader:
    """Open ``path`` for reading: plainly, or following its writer when asked to."""
    current = _following.get()
    if current is not None and current[0] == path:
        return io.BufferedReader(GrowingFileReader(path, current[1]), buffer_size=1024 * 1024)
    return path.open("rb")
