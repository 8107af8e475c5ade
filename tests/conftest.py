"""Every shared fixture, in one place: a clean environment, a real S3 API server (moto in
server mode) on a free loopback port, the landing block for it, a state DB, and
``run_jobs`` / ``run_job`` to run a batch end to end. Fixtures for one protocol (FTP/SFTP
servers, the test REST API) live beside their servers and are registered below; plain
helpers are in ``tests/helpers.py``."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from module_system.config import load_batch, load_registry
from module_system.demo.servers import DEMO_CREDENTIALS, MotoServer
from module_system.observability.redaction import forget_secrets
from module_system.orchestrator.batch import run_batch
from module_system.pipeline import RunOptions
from module_system.results import BatchResult, JobResult
from module_system.state import StateStore
from tests import helpers
from tests.helpers import RunJob, RunJobs, write_batch, write_registry

pytest_plugins = ["tests.conftest_ftp", "tests.api_server"]

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


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A throwaway database on the machine's PostgreSQL server, dropped afterwards."""
    with helpers.pg_database() as url:
        yield url


@pytest.fixture
def landing(s3_server: MotoServer, landing_bucket: str) -> dict[str, Any]:
    """The registry's ``landing:`` block: the test S3 server and a fresh bucket."""
    return {"bucket": landing_bucket, "endpoint_url": s3_server.url, "region": "us-east-1"}


@pytest.fixture
def run_jobs(tmp_path: Path, landing: dict[str, Any], state_url: str) -> RunJobs:
    """``run_jobs(services, jobs=None, options=None, *, landing=..., state_url=...,
    max_workers=4, **run_batch_keywords)``: write a registry and a batch into a folder of
    their own under ``tmp_path`` and run the batch. ``jobs`` defaults to one job a service,
    ``job_<service>``. Every call uses the test's state DB unless told another, so a second
    call is an incremental run."""
    calls = itertools.count(1)
    test_landing, test_state_url = landing, state_url

    def run(
        services: dict[str, Any],
        jobs: list[tuple[str, str]] | None = None,
        options: RunOptions | None = None,
        *,
        landing: dict[str, Any] | None = None,
        state_url: str | None = None,
        max_workers: int = 4,
        **batch: Any,
    ) -> BatchResult:
        folder = tmp_path / f"run{next(calls)}"
        folder.mkdir()
        registry = load_registry(
            write_registry(folder / "registry.yaml", landing or test_landing, services)
        )
        jobs = jobs or [(f"job_{name}", name) for name in services]
        batch_file = load_batch(write_batch(folder / "batch.json", jobs), registry)
        state = StateStore(state_url or test_state_url)
        options = options or RunOptions()
        try:
            return run_batch(
                registry, batch_file, state, max_workers=max_workers, options=options, **batch
            )
        finally:
            state.close()

    return run


@pytest.fixture
def run_job(run_jobs: RunJobs) -> RunJob:
    """``run_job(service, options=None, **run_jobs_keywords)``: one job of one service,
    ``svc``; the jobs of a test are ``job1``, ``job2``, … Returns the job's result."""
    calls = itertools.count(1)

    def run(service: dict[str, Any], options: RunOptions | None = None, **where: Any) -> JobResult:
        job_id = f"job{next(calls)}"
        return run_jobs({"svc": service}, [(job_id, "svc")], options, **where).jobs[0]

    return run
