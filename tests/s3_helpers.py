"""S3 → S3 services against the test S3 server; jobs run with conftest's ``run_jobs``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from module_system.config import load_batch, load_registry
from module_system.orchestrator.batch import run_batch
from module_system.pipeline import RunOptions
from module_system.results import BatchResult
from module_system.state import StateStore
from tests.helpers import write_batch, write_registry

SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["id", "day"],
    "properties": {"id": {"type": "integer"}, "day": {"type": "string", "format": "date"}},
}


def s3_service(endpoint: str, bucket: str, **overrides: Any) -> dict[str, Any]:
    """A service reading the JSON files of ``s3://bucket/in/`` at ``endpoint``, with fast
    retries; ``overrides`` replace whole top-level keys. Fresh dicts every call: tests
    change them."""
    include = ["*.json", "*.ndjson", "*.jsonl"]
    source = {"bucket": bucket, "prefix": "in/", "endpoint_url": endpoint, "include": include}
    retry = {"attempts": 4, "backoff": 0.01, "max_backoff": 0.05}
    validation = {"json_schema": SCHEMA}
    service = {"type": "s3", "source": source, "validation": validation, "retry": retry}
    return {**service, **overrides}


def run_jobs(
    tmp_path: Path,
    landing: dict[str, Any],
    services: dict[str, Any],
    jobs: list[tuple[str, str]],
    state_url: str,
    options: RunOptions | None = None,
    max_workers: int = 4,
) -> BatchResult:
    registry = load_registry(write_registry(tmp_path / "registry.yaml", landing, services))
    batch = load_batch(write_batch(tmp_path / "batch.json", jobs), registry)
    state = StateStore(state_url)
    try:
        return run_batch(
            registry, batch, state, max_workers=max_workers, options=options or RunOptions()
        )
    finally:
        state.close()
