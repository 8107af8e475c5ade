"""Batches of API responses: up to ``batch_pages`` pages in one NDJSON object.

Each page is one line, ``{"url": ..., "status": ..., "fetched_at": ..., "body": ...}``. The
batch item lists its pages as ``parts`` (one :class:`RemoteItem` a line, in line order), so
the pipeline can land an invalid page on its own: it validates the batch, and only when
that fails, each line alone (see :mod:`module_system.pipeline.parts`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import orjson

from module_system.sources.base import RemoteItem

SPOOL_BYTES = 4 * 1024 * 1024  # bodies above this wait for the pool on disk, not in memory


def response_line(url: str, status: int, fetched_at: str, body: bytes) -> bytes:
    """One NDJSON line holding a response. ``body`` must be JSON (it parsed): it goes in as
    received, so numbers keep their exact text and nothing is serialised again. A line break
    in valid JSON can only be whitespace between tokens, so a space replaces it."""
    head = orjson.dumps({"url": url, "status": status, "fetched_at": fetched_at})
    one_line = body.replace(b"\n", b" ").replace(b"\r", b" ")
    return b"".join((head[:-1], b',"body":', one_line, b"}\n"))


class PageBatch:
    """The lines of the batch being filled: in memory up to :data:`SPOOL_BYTES`, then in a
    spool file (``spool_path`` names one), so items waiting for the pool stay small.
    :meth:`take` hands the batch over as one item and starts the next."""

    def __init__(self, key_prefix: str, spool_path: Callable[[], Path]) -> None:
        self._key_prefix, self._spool_path = key_prefix, spool_path
        self._start()

    def _start(self) -> None:
        self._lines: list[bytes] = []
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self._numbers: list[int] = []
        self.parts: list[RemoteItem] = []
        self.size = 0

    def __len__(self) -> int:
        return len(self.parts)

    def add(self, number: int, line: bytes, part: RemoteItem) -> None:
        """Add page ``number`` as ``line``; ``part`` is the item it becomes on its own."""
        self._numbers.append(number)
        self.parts.append(part)
        self.size += len(line)
        if self._file is None and self.size > SPOOL_BYTES:
            self._path = self._spool_path()
            self._file = self._path.open("wb")
            self._file.writelines(self._lines)
            self._lines = []
        if self._file is not None:
            self._file.write(line)
        else:
            self._lines.append(line)

    def take(self) -> RemoteItem:
        """The batch as one item, keyed by its first and last page; its details list each
        page's details. The next batch starts empty."""
        first, last = self._numbers[0], self._numbers[-1]
        extra: dict[str, Any] = {
            "parts": self.parts,
            "details": {"parts": [part.extra["details"] for part in self.parts]},
        }
        if self._file is not None:
            self._file.close()
            extra["spooled"] = self._path
        else:
            extra["body"] = b"".join(self._lines)
        key = f"{self._key_prefix}/pages-{first:06d}-{last:06d}.ndjson"
        item = RemoteItem(key=key, uri=self.parts[0].uri, size=self.size, extra=extra)
        self._start()
        return item

    def close(self) -> None:
        """Close the spool file of a batch never taken (the listing was abandoned)."""
        if self._file is not None:
            self._file.close()
