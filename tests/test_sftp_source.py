"""SFTP-only behaviour (SSH keys, host keys) end to end, against asyncssh's SFTP server on
loopback. The scenarios SFTP shares with FTP are in test_file_servers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from module_system.results import JobStatus
from tests.ftp_servers import SftpServer, ftp_service
from tests.helpers import RunJob


@pytest.fixture(scope="module")
def client_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


@pytest.fixture
def sftp(ftp_root: Path, client_key: asyncssh.SSHKey) -> Iterator[SftpServer]:
    with SftpServer(ftp_root, client_key) as server:
        yield server


@pytest.fixture
def known_hosts(tmp_path: Path, sftp: SftpServer) -> Path:
    path = tmp_path / "known_hosts"
    path.write_text(sftp.known_hosts_line())
    return path


def sftp_service(sftp: SftpServer, known_hosts: Path, **source: Any) -> dict[str, Any]:
    return ftp_service(sftp.port, "sftp", known_hosts=str(known_hosts), **source)


@pytest.mark.parametrize("form", ["path", "text"])
def test_private_key_login(
    form: str, sftp: SftpServer, known_hosts: Path, run_job: RunJob,
    client_key: asyncssh.SSHKey, tmp_path: Path,
) -> None:  # fmt: skip
    pem = client_key.export_private_key().decode()
    key_file = tmp_path / "id_ed25519"
    key_file.write_text(pem)
    key_file.chmod(0o600)
    value = str(key_file) if form == "path" else pem
    job = run_job(sftp_service(sftp, known_hosts, password="", private_key=value))
    assert job.status is JobStatus.COMPLETED, job.error


def test_host_key_mismatch_is_terminal(sftp: SftpServer, run_job: RunJob, tmp_path: Path) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(sftp.known_hosts_line(other))
    job = run_job(sftp_service(sftp, wrong))
    assert job.status is JobStatus.FAILED
    assert "host key mismatch" in (job.error or "")
    assert not job.retries


def test_unknown_host_is_rejected_by_default(
    sftp: SftpServer, run_job: RunJob, tmp_path: Path
) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    job = run_job(sftp_service(sftp, empty))
    assert job.status is JobStatus.FAILED
    assert "host key unknown" in (job.error or "")
