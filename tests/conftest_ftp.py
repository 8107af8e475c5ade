"""Fixtures for FTP/FTPS/SFTP tests; test modules load them with
``pytest_plugins = ["tests.conftest_ftp"]``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from module_system.demo.servers import MotoServer
from module_system.pipeline import RunOptions
from module_system.results import JobResult
from tests.ftp_servers import FtpServer, make_tree
from tests.s3_helpers import run_jobs


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A throwaway CA (the file the tests trust) and a server certificate for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(folder / "server.pem"))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    return {"server": folder / "server.pem", "ca": folder / "ca.pem"}


@pytest.fixture
def ftp_root(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "ftp-root")


@pytest.fixture
def ftp_server(ftp_root: Path, tls_files: dict[str, Path]) -> Iterator[Callable[..., FtpServer]]:
    """``ftp_server("plain" | "nomlsd" | "dos" | "dropping" | "explicit" | "implicit")``."""
    started: list[FtpServer] = []

    def start(kind: str = "plain", root: Path | None = None) -> FtpServer:
        server = FtpServer(root or ftp_root, kind, tls_files["server"]).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def landing(s3_server: MotoServer, landing_bucket: str) -> dict[str, Any]:
    return {"bucket": landing_bucket, "endpoint_url": s3_server.url, "region": "us-east-1"}


@pytest.fixture
def run_ftp_job(
    tmp_path: Path, landing: dict[str, Any], state_url: str
) -> Callable[..., JobResult]:
    """Run one job of one service (``service`` from :func:`ftp_service`); same state DB
    across calls, so a second call is an incremental run."""
    counter = iter(range(1, 1000))

    def run(service: dict[str, Any], options: RunOptions | None = None) -> JobResult:
        number = next(counter)
        folder = tmp_path / f"run{number}"
        folder.mkdir()
        result = run_jobs(folder, landing, {"svc": service}, [(f"job{number}", "svc")],
                          state_url, options)  # fmt: skip
        return result.jobs[0]

    return run
