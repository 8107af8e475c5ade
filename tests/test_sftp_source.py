"""SFTP → S3 end to end, against asyncssh's SFTP server on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from module_system.results import JobResult, JobStatus
from tests.conftest import list_keys, read_json
from tests.ftp_servers import GOOD_CSV, PASSWORD, SftpServer, ftp_service
from tests.s3_helpers import sha256

pytest_plugins = ["tests.conftest_ftp"]

ROOT = "data/sftp/svc/"
Runner = Callable[..., JobResult]


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


def test_password_login_lands_nested_spaces_and_non_ascii(
    sftp: SftpServer, known_hosts: Path, run_ftp_job: Runner, s3: Any,
    landing: dict[str, Any], ftp_root: Path,
) -> None:  # fmt: skip
    job = run_ftp_job(sftp_service(sftp, known_hosts))
    assert job.status is JobStatus.COMPLETED, job.error
    assert (job.counts.listed, job.counts.valid, job.counts.invalid) == (5, 4, 1)
    keys = list_keys(s3, landing["bucket"], ROOT)
    for name in ("2026-11-01.csv", "nested/deep/2026-11-02.csv", "with space é.csv"):
        assert ROOT + "validated/" + name in keys
    assert ROOT + "quarantine/bad.csv.error.json" in keys
    manifest = read_json(s3, landing["bucket"], f"{ROOT}_manifests/{job.job_id}.json")
    for entry in manifest["files"]:
        assert entry["sha256"] == sha256((ftp_root / "outgoing" / entry["key"]).read_bytes())
        assert entry["version"].startswith(f"{entry['size']}:")
        assert entry["source_uri"].startswith(f"sftp://alice@127.0.0.1:{sftp.port}/")


def test_incremental_rerun_skips_unchanged(
    sftp: SftpServer, known_hosts: Path, run_ftp_job: Runner, ftp_root: Path
) -> None:
    assert run_ftp_job(sftp_service(sftp, known_hosts)).counts.fetched == 5
    second = run_ftp_job(sftp_service(sftp, known_hosts))
    assert (second.counts.skipped, second.counts.fetched) == (5, 0)
    (ftp_root / "outgoing" / "bad.csv").write_bytes(GOOD_CSV)
    third = run_ftp_job(sftp_service(sftp, known_hosts))
    assert (third.counts.fetched, third.counts.valid) == (1, 1)


@pytest.mark.parametrize("form", ["path", "text"])
def test_private_key_login(
    form: str, sftp: SftpServer, known_hosts: Path, run_ftp_job: Runner,
    client_key: asyncssh.SSHKey, tmp_path: Path,
) -> None:  # fmt: skip
    pem = client_key.export_private_key().decode()
    key_file = tmp_path / "id_ed25519"
    key_file.write_text(pem)
    key_file.chmod(0o600)
    value = str(key_file) if form == "path" else pem
    job = run_ftp_job(sftp_service(sftp, known_hosts, password="", private_key=value))
    assert job.status is JobStatus.COMPLETED, job.error


def test_host_key_mismatch_is_terminal(
    sftp: SftpServer, run_ftp_job: Runner, tmp_path: Path
) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text(sftp.known_hosts_line(other))
    job = run_ftp_job(sftp_service(sftp, wrong))
    assert job.status is JobStatus.FAILED
    assert "host key mismatch" in (job.error or "")
    assert not job.retries


def test_unknown_host_is_rejected_by_default(
    sftp: SftpServer, run_ftp_job: Runner, tmp_path: Path
) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    job = run_ftp_job(sftp_service(sftp, empty))
    assert job.status is JobStatus.FAILED
    assert "host key unknown" in (job.error or "")


def test_wrong_password_fails_at_once_without_the_password(
    sftp: SftpServer, known_hosts: Path, run_ftp_job: Runner
) -> None:
    secret = "Wr0ng-Secret-Value"
    job = run_ftp_job(sftp_service(sftp, known_hosts, password=secret))
    assert job.status is JobStatus.FAILED
    assert "login refused" in (job.error or "") and secret not in (job.error or "")
    assert PASSWORD not in (job.error or "")
    assert not job.retries


def test_missing_path(sftp: SftpServer, known_hosts: Path, run_ftp_job: Runner) -> None:
    job = run_ftp_job(sftp_service(sftp, known_hosts, path="/nowhere"))
    assert job.status is JobStatus.FAILED
    assert "path missing" in (job.error or "") and "/nowhere" in (job.error or "")


def test_unreadable_file_fails_with_its_path(
    sftp: SftpServer, known_hosts: Path, run_ftp_job: Runner, ftp_root: Path
) -> None:
    (ftp_root / "outgoing" / "locked.csv").write_bytes(GOOD_CSV)  # the server refuses it
    job = run_ftp_job(sftp_service(sftp, known_hosts))
    assert job.status is JobStatus.FAILED
    assert "/outgoing/locked.csv" in (job.error or "") and "permission denied" in (job.error or "")
