"""The per-job manifest: every file the job considered, what happened to it and where it
landed. Uploaded to ``data/{source}/{service_id}/_manifests/{job_id}.json``.

Entries are spooled to a local NDJSON file as they come, so a job's memory does not grow
with its number of files; the JSON document is written from the spool at the end, sorted
by key when the job is small enough to sort in memory (:data:`SORT_LIMIT`), in completion
order otherwise.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from module_system.results import FileOutcome, JobResult

SORT_LIMIT = 10_000  # entries sorted by key in memory; past this, completion order


@dataclass(frozen=True)
class ManifestEntry:
    key: str
    source_uri: str
    outcome: FileOutcome
    size: int | None = None
    version: str | None = None
    modified: str | None = None
    sha256: str | None = None
    verdict: str | None = None  # valid | invalid | None when not validated this run
    error_count: int = 0
    landing_key: str | None = None
    error: str | None = None
    details: dict[str, Any] | None = None  # source facts, e.g. an API page's HTTP status
    note: str | None = None  # e.g. "supersedes a valid version"
    transfer: str | None = None  # how it landed: upload, copy (server-side) or stream

    def as_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its deep copy was the biggest cost of an unchanged file.
        data = dict(self.__dict__)
        data["outcome"] = self.outcome.value
        return data


class Manifest:
    """Collects entries from many threads into a spool file; see the module docstring."""

    def __init__(self, spool_dir: Path | None = None) -> None:
        # Closed by close(), which the job calls in its finally block.
        self._spool: IO[bytes] = tempfile.TemporaryFile(dir=spool_dir, prefix="manifest-")  # noqa: SIM115
        self._lock = threading.Lock()
        self.count = 0
        self.first_error: str | None = None

    def add(self, entry: ManifestEntry) -> None:
        line = orjson.dumps(entry.as_dict(), default=str) + b"\n"
        with self._lock:
            self._spool.write(line)
            self.count += 1
            if entry.error and self.first_error is None:
                self.first_error = entry.error

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every entry, as a dict, in the order added. Call once adding has ended."""
        self._spool.flush()
        self._spool.seek(0)
        for line in self._spool:
            yield orjson.loads(line)
        self._spool.seek(0, 2)

    def write_document(self, result: JobResult, run_id: str, out: IO[bytes]) -> None:
        """Write the manifest JSON document to ``out``, one file entry at a time."""
        job = result.as_dict()
        header = {
            "run_id": run_id,
            "job_id": result.job_id,
            "service_id": result.service_id,
            "source_type": result.source_type,
            "status": job["status"],
            "error": result.error,
            "started_at": job["started_at"],
            "finished_at": job["finished_at"],
            "counts": job["counts"],
            "retries": job["retries"],
        }
        out.write(orjson.dumps(header, default=str)[:-1] + b',"files":[')
        files = self.entries()
        if self.count <= SORT_LIMIT:
            files = iter(sorted(files, key=lambda e: str(e["key"])))
        for n, entry in enumerate(files):
            out.write((b",\n" if n else b"\n") + orjson.dumps(entry))
        out.write(b"\n]}\n")

    def close(self) -> None:
        self._spool.close()
