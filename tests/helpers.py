"""Plain helpers the tests share: registry and batch files, reading what landed in S3,
checksums, a throwaway PostgreSQL database. Fixtures live in ``tests/conftest.py``."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from module_system.results import BatchResult, JobResult

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"

# What the ``run_jobs`` and ``run_job`` fixtures return, for annotating test parameters.
RunJobs = Callable[..., BatchResult]
RunJob = Callable[..., JobResult]


def write_registry(path: Path, landing: dict[str, Any], services: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"landing": landing, "services": services}, sort_keys=False))
    return path


def write_batch(path: Path, jobs: list[tuple[str, str]], description: str = "test") -> Path:
    data = {"description": description, "jobs": [{"job_id": j, "service_id": s} for j, s in jobs]}
    path.write_text(json.dumps(data))
    return path


def list_keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


def read_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextmanager
def pg_database() -> Iterator[str]:
    """A throwaway database on the machine's PostgreSQL, dropped afterwards; yields its URL."""
    import psycopg

    name = f"ms_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
