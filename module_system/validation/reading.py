"""How validators read a file: decompressed, following a download, and within limits.

A validator reads through :func:`open_binary`. Two limits keep one hostile file from
taking a worker's memory or time, and each makes the file invalid with its own reason:

- ``max_bytes`` (``too_large``): the most bytes a validator reads, counted after
  decompression. For readers that hold the whole text at once (a ``.json`` document).
- ``max_ratio`` (``decompression_bomb``): the most decompressed bytes per compressed byte
  read, once past ``grace_bytes`` of output. Deflate reaches ~1,030:1 on a run of zeros;
  real data seldom passes 20:1. So a 1 MB ``.gz`` can make at most ``max_ratio`` MB of
  work, not 1 GB.
"""

from __future__ import annotations

import gzip
import io
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, cast

from module_system.errors import TerminalError
from module_system.growing_file import open_following

DEFAULT_MAX_RATIO = 200.0
# The validators' `max_decompression_ratio` option, described once for the registry schema.
DECOMPRESSION_RATIO = (
    "decompressed bytes per compressed byte a .gz file may reach past its first MiB; more "
    "makes it invalid (decompression_bomb); null: no limit"
)
DEFAULT_GRACE_BYTES = 1024 * 1024
READ_BUFFER = 256 * 1024
# gzip asks for 128 KiB of compressed input at a time, which a bomb turns into 128 MiB:
# handing it less keeps the count of compressed bytes close to what was decompressed.
COMPRESSED_READ = 16 * 1024


class InputRefused(TerminalError):
    """A file the validator stopped reading: over a size or decompression limit.
    ``reason``: ``too_large`` or ``decompression_bomb``. The file is invalid, with this
    message; the job goes on."""


@dataclass(frozen=True)
class ReadLimits:
    """Limits on what a validator reads of one file (None: no limit)."""

    max_bytes: int | None = None
    max_ratio: float | None = DEFAULT_MAX_RATIO
    grace_bytes: int = DEFAULT_GRACE_BYTES


def open_binary(path: Path, name: str, limits: ReadLimits | None = None) -> IO[bytes]:
    """Open a file for reading, decompressing when its name ends in ``.gz``. While the
    pipeline is still downloading the file, the reader follows the download. A read past
    a limit raises :class:`InputRefused` (default limits: the decompression ratio guard)."""
    limits = limits or ReadLimits()
    raw = open_following(path)
    if name.lower().endswith(".gz"):
        compressed = _CountingReader(raw)
        unpacked = _ClosingGzipFile(compressed)
        return _limited(unpacked, limits, compressed)
    if limits.max_bytes is None:
        return raw  # nothing to count: the plain file, at full speed
    return _limited(raw, limits, None)


def _limited(source: _Source, limits: ReadLimits, compressed: _CountingReader | None) -> IO[bytes]:
    reader = _LimitedReader(source, limits, compressed)
    return cast(IO[bytes], io.BufferedReader(reader, buffer_size=READ_BUFFER))


class _Source(Protocol):
    def readinto(self, buffer: memoryview | bytearray, /) -> int: ...

    def close(self) -> None: ...


class _CountingReader:
    """A file object that counts the bytes read from it (the compressed side)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.count = raw, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(COMPRESSED_READ if size < 0 else min(size, COMPRESSED_READ))
        self.count += len(data)
        return data

    def close(self) -> None:
        self.raw.close()


class _LimitedReader(io.RawIOBase):
    """Reads ``source``, raising :class:`InputRefused` once past a limit."""

    def __init__(
        self, source: _Source, limits: ReadLimits, compressed: _CountingReader | None
    ) -> None:
        super().__init__()
        self.source, self.limits, self.compressed = source, limits, compressed
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        count = self.source.readinto(buffer)
        self.count += count
        self._check()
        return count

    def _check(self) -> None:
        limit, ratio = self.limits.max_bytes, self.limits.max_ratio
        if limit is not None and self.count > limit:
            raise InputRefused(
                f"the file is larger than {limit:,} bytes{self._unpacked()} (max_file_bytes);"
                " not read further",
                reason="too_large",
            )
        if ratio is None or self.compressed is None or self.count <= self.limits.grace_bytes:
            return
        packed = max(self.compressed.count, 1)
        if self.count > ratio * packed:
            raise InputRefused(
                f"decompression bomb: {packed:,} compressed bytes gave over {self.count:,}"
                f" (more than {ratio:g} to 1, max_decompression_ratio); not read further",
                reason="decompression_bomb",
            )

    def _unpacked(self) -> str:
        return " once decompressed" if self.compressed is not None else ""

    def close(self) -> None:
        try:
            self.source.close()
        finally:
            super().close()


class _ClosingGzipFile(gzip.GzipFile):
    """A gzip reader that also closes the file it reads from."""

    def __init__(self, raw: _CountingReader) -> None:
        super().__init__(fileobj=cast(IO[bytes], raw), mode="rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()
