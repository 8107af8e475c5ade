"""The per-job manifest: every file the job considered, what happened to it and where it
landed. Uploaded to ``data/{source}/{service_id}/_manifests/{job_id}.json``."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

from module_system.results import FileOutcome, JobResult


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

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["outcome"] = self.outcome.value
        return data


class Manifest:
    """Collects entries from many threads."""

    def __init__(self) -> None:
        self._entries: list[ManifestEntry] = []
        self._lock = threading.Lock()

    def add(self, entry: ManifestEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    @property
    def entries(self) -> list[ManifestEntry]:
        with self._lock:
            return list(self._entries)

    def document(self, result: JobResult, run_id: str) -> dict[str, Any]:
        job = result.as_dict()
        return {
            "run_id": run_id,
            "job_id": result.job_id,
            "service_id": result.service_id,
            "source_type": result.source_type,
            "status": job["status"],
            "error": result.error,
            "started_at": job["started_at"],
            "finished_at": job["finished_at"],
            "counts": job["counts"],
            "files": [e.as_dict() for e in sorted(self.entries, key=lambda e: e.key)],
        }
