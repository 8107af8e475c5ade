"""FTPS and FTP-only behaviour → S3 end to end, against pyftpdlib servers on loopback.
The scenarios FTP shares with SFTP are in test_file_servers.py."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from module_system.results import JobStatus
from tests.ftp_servers import GOOD_CSV, FtpServer, ftp_service
from tests.helpers import RunJob
from tests.test_file_servers import assert_landed


@pytest.mark.parametrize("tls", ["explicit", "implicit"])
def test_ftps_with_a_trusted_ca(
    tls: str, ftp_server: Callable[..., FtpServer], run_job: RunJob, s3: Any,
    landing: dict[str, Any], ftp_root: Path, tls_files: dict[str, Path],
) -> None:  # fmt: skip
    server = ftp_server(tls)
    job = run_job(ftp_service(server.port, tls=tls, ca_file=str(tls_files["ca"])))
    assert_landed(s3, landing, ftp_root, job, f"ftps://alice@127.0.0.1:{server.port}/")
    commands = server.state["commands"]
    assert "PROT P" in commands
    assert ("AUTH TLS" in commands) == (tls == "explicit")


def test_ftps_untrusted_certificate_fails_unless_verify_is_off(
    ftp_server: Callable[..., FtpServer], run_job: RunJob
) -> None:
    server = ftp_server("explicit")
    job = run_job(ftp_service(server.port, tls="explicit"))
    assert job.status is JobStatus.FAILED
    assert "TLS handshake failed: certificate not trusted" in (job.error or "")
    insecure = run_job(ftp_service(server.port, tls="explicit", verify=False))
    assert insecure.status is JobStatus.COMPLETED, insecure.error


def test_explicit_tls_against_a_plain_server_is_refused_clearly(
    ftp_server: Callable[..., FtpServer], run_job: RunJob
) -> None:
    job = run_job(ftp_service(ftp_server("plain").port, tls="explicit"))
    assert job.status is JobStatus.FAILED
    assert "TLS handshake failed" in (job.error or "")


def test_active_mode(ftp_server: Callable[..., FtpServer], run_job: RunJob) -> None:
    server = ftp_server()
    job = run_job(ftp_service(server.port, passive=False))
    assert job.status is JobStatus.COMPLETED, job.error
    assert any(c.startswith(("PORT", "EPRT")) for c in server.state["commands"])


def test_gzip_archive_is_validated(ftp_root: Path) -> None:
    assert gzip.decompress((ftp_root / "outgoing" / "archive.csv.gz").read_bytes()) == GOOD_CSV


@pytest.mark.parametrize("kind", ["plain", "nomlsd", "dos"])
def test_files_are_read_in_binary_with_type_i_sent_only_after_a_listing(
    kind: str, ftp_server: Callable[..., FtpServer], run_job: RunJob
) -> None:
    """Every RETR runs in binary mode, but TYPE I is not repeated before each file: only at
    login and after a listing (MLSD and LIST switch to ASCII). One connection, so the
    commands are one session's, in order."""
    server = ftp_server(kind)
    job = run_job(ftp_service(server.port, max_connections=1))
    assert job.status is JobStatus.COMPLETED, job.error
    commands = [c for c in server.state["commands"] if c.split()[0] in ("TYPE", "RETR")]
    retrs = [c for c in commands if c.startswith("RETR")]
    assert len(retrs) >= 3
    mode = None
    for command in commands:
        if command.startswith("TYPE"):
            mode = command
        else:
            assert mode == "TYPE I", (command, commands)
    assert commands.count("TYPE I") < len(retrs)
