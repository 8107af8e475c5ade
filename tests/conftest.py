"""Shared fixtures: a real S3 API server (moto in server mode) on a free loopback port,
a clean environment, and helpers to write registries and batch files."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from module_system.demo.servers import DEMO_CREDENTIALS, MotoServer
from module_system.observability.redaction import forget_secrets

SCRUBBED_PREFIXES = ("AWS_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "MODULE_SYSTEM_")


@pytest.fixture(autouse=True)
def forget_registered_secrets() -> Iterator[None]:
    """Secrets registered for masking by one test must not mask another test's text."""
    yield
    forget_secrets()


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No real credentials, proxies or user settings leak into a test."""
    for name in list(os.environ):
        if name.upper().startswith(SCRUBBED_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    for name, value in DEMO_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with MotoServer(log_path=log) as server:
        yield server


@pytest.fixture
def s3(s3_server: MotoServer) -> Any:
    """A boto3 client of the test S3 server."""
    return boto3.client(
        "s3",
        endpoint_url=s3_server.url,
        region_name="us-east-1",
        aws_access_key_id=DEMO_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DEMO_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture
def landing_bucket(s3: Any) -> str:
    name = f"landing-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def source_bucket(s3: Any) -> str:
    name = f"source-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def state_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A throwaway database on the machine's PostgreSQL server, dropped afterwards."""
    import psycopg

    name = f"ms_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
