"""S3 → S3 services against the test S3 server; jobs run with conftest's ``run_jobs``."""

from __future__ import annotations

from typing import Any

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
