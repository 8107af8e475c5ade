"""FTP and FTPS → S3 end to end, against pyftpdlib servers on loopback."""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from module_system.results import JobResult, JobStatus
from tests.conftest import list_keys, read_json
from tests.ftp_servers import GOOD_CSV, PASSWORD, FtpServer, ftp_service, make_tree
from tests.s3_helpers import sha256

pytest_plugins = ["tests.conftest_ftp"]

ROOT = "data/ftp/svc/"
LANDED = {"2026-11-01.csv", "nested/deep/2026-11-02.csv", "with space é.csv", "archive.csv.gz"}

Runner = Callable[..., JobResult]


def assert_landed(s3: Any, landing: dict[str, Any], ftp_root: Path, job: JobResult) -> None:
    assert job.status is JobStatus.COMPLETED, job.error
    assert (job.counts.listed, job.counts.valid, job.counts.invalid) == (5, 4, 1)
    keys = list_keys(s3, landing["bucket"], ROOT)
    for name in LANDED:
        assert ROOT + "validated/" + name in keys
    assert ROOT + "quarantine/bad.csv" in keys and ROOT + "quarantine/bad.csv.error.json" in keys
    assert not any("README" in key for key in keys)
    manifest = read_json(s3, landing["bucket"], f"{ROOT}_manifests/{job.job_id}.json")
    for entry in manifest["files"]:
        source = (ftp_root / "outgoing" / entry["key"]).read_bytes()
        assert entry["sha256"] == sha256(source), entry["key"]
        assert entry["source_uri"].startswith("ftp")
        assert PASSWORD not in str(entry)


@pytest.mark.parametrize("kind", ["plain", "nomlsd", "dos"])
def test_lands_with_mlsd_unix_list_and_dos_list(
    kind: str, ftp_server: Callable[..., FtpServer], run_ftp_job: Runner, s3: Any,
    landing: dict[str, Any], ftp_root: Path,
) -> None:  # fmt: skip
    server = ftp_server(kind)
    job = run_ftp_job(ftp_service(server.port))
    assert_landed(s3, landing, ftp_root, job)
    commands = " ".join(server.state["commands"])
    assert ("MLSD" in commands) == (kind == "plain")
    manifest = read_json(s3, landing["bucket"], f"{ROOT}_manifests/{job.job_id}.json")
    versions = {e["key"]: e["version"] for e in manifest["files"]}
    size = len(GOOD_CSV)
    assert versions["2026-11-01.csv"].startswith(f"{size}:")  # size + mtime from every format


def test_quarantine_report_names_row_and_column(
    ftp_server: Callable[..., FtpServer], run_ftp_job: Runner, s3: Any, landing: dict[str, Any]
) -> None:
    server = ftp_server()
    run_ftp_job(ftp_service(server.port))
    report = read_json(s3, landing["bucket"], ROOT + "quarantine/bad.csv.error.json")
    assert report["validator"] == "csv" and report["error_count"] == 4
    assert {"location": "row 2, column 'amount'",
            "message": "constraint minimum: '-5' is below 0"} in report["errors"]  # fmt: skip
    assert report["source_uri"] == f"ftp://alice@127.0.0.1:{server.port}/outgoing/bad.csv"


def test_incremental_rerun_skips_unchanged_and_fetches_changed(
    ftp_server: Callable[..., FtpServer], run_ftp_job: Runner, ftp_root: Path
) -> None:
    server = ftp_server()
    first = run_ftp_job(ftp_service(server.port))
    assert first.counts.fetched == 5
    second = run_ftp_job(ftp_service(server.port))
    assert (second.counts.skipped, second.counts.fetched) == (5, 0)
    changed = ftp_root / "outgoing" / "2026-11-01.csv"
    changed.write_bytes(GOOD_CSV + b"3,1,2026-11-03\n")
    third = run_ftp_job(ftp_service(server.port))
    assert (third.counts.fetched, third.counts.valid, third.counts.skipped) == (1, 1, 4)


def test_connection_dropped_mid_transfer_resumes_and_lands_intact(
    ftp_server: Callable[..., FtpServer], run_ftp_job: Runner, s3: Any,
    landing: dict[str, Any], tmp_path: Path,
) -> None:  # fmt: skip
    big = b"id,amount,day\n" + b"".join(b"%d,%d.5,2026-11-01\n" % (i, i) for i in range(200_000))
    root = make_tree(tmp_path / "drop-root", {"outgoing/big.csv": big})
    server = ftp_server("dropping", root)
    server.state.update(drops=1, drop_after=1_000_000)
    job = run_ftp_job(ftp_service(server.port))
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.counts.valid == 1 and sum(job.retries.values()) >= 1
    assert any(c.startswith("REST ") and c != "REST 0" for c in server.state["commands"])
    body = s3.get_object(Bucket=landing["bucket"], Key=ROOT + "validated/big.csv")["Body"].read()
    assert sha256(body) == sha256(big)
    manifest = read_json(s3, landing["bucket"], f"{ROOT}_manifests/{job.job_id}.json")
    assert [e["sha256"] for e in manifest["files"]] == [sha256(big)]


def test_file_vanishing_after_listing_is_reported_not_fatal(
    ftp_server: Callable[..., FtpServer], run_ftp_job: Runner
) -> None:
    server = ftp_server()
    server.state["vanish"] = "bad.csv"
    job = run_ftp_job(ftp_service(server.port))
    assert job.status is JobStatus.COMPLETED, job.error
    assert (job.counts.vanished, job.counts.valid) == (1, 4)


def test_unreadable_file_fails_with_its_path(
    ftp_server: Callable[..., FtpServer], run_ftp_job: Runner, ftp_root: Path
) -> None:
    (ftp_root / "outgoing" / "locked").mkdir()
    (ftp_root / "outgoing" / "locked" / "secret.csv").write_bytes(GOOD_CSV)
    job = run_ftp_job(ftp_service(ftp_server().port))
    assert job.status is JobStatus.FAILED
    assert (job.counts.failed, job.counts.valid) == (1, 4)
    assert "/outgoing/locked/secret.csv" in (job.error or "")
    assert not job.retries  # a refusal is terminal


def test_wrong_password_fails_at_once_without_retry_or_password(
    ftp_server: Callable[..., FtpServer], run_ftp_job: Runner
) -> None:
    server = ftp_server()
    secret = "Wr0ng-Secret-Value"
    job = run_ftp_job(ftp_service(server.port, password=secret))
    assert job.status is JobStatus.FAILED
    assert "login refused" in (job.error or "") and "127.0.0.1" in (job.error or "")
    assert secret not in (job.error or "")
    assert server.state["commands"].count("PASS") == 1


def test_missing_path_is_a_clear_terminal_error(
    ftp_server: Callable[..., FtpServer], run_ftp_job: Runner
) -> None:
    server = ftp_server()
    job = run_ftp_job(ftp_service(server.port, path="/no/such/folder"))
    assert job.status is JobStatus.FAILED
    assert "/no/such/folder" in (job.error or "") and "path missing" in (job.error or "")
    assert sum(1 for c in server.state["commands"] if c.startswith("CWD")) == 1


@pytest.mark.parametrize("tls", ["explicit", "implicit"])
def test_ftps_with_a_trusted_ca(
    tls: str, ftp_server: Callable[..., FtpServer], run_ftp_job: Runner, s3: Any,
    landing: dict[str, Any], ftp_root: Path, tls_files: dict[str, Path],
) -> None:  # fmt: skip
    server = ftp_server(tls)
    job = run_ftp_job(ftp_service(server.port, tls=tls, ca_file=str(tls_files["ca"])))
    assert_landed(s3, landing, ftp_root, job)
    commands = server.state["commands"]
    assert "PROT P" in commands
    assert ("AUTH TLS" in commands) == (tls == "explicit")


def test_ftps_untrusted_certificate_fails_unless_verify_is_off(
    ftp_server: Callable[..., FtpServer], run_ftp_job: Runner
) -> None:
    server = ftp_server("explicit")
    job = run_ftp_job(ftp_service(server.port, tls="explicit"))
    assert job.status is JobStatus.FAILED
    assert "TLS handshake failed: certificate not trusted" in (job.error or "")
    insecure = run_ftp_job(ftp_service(server.port, tls="explicit", verify=False))
    assert insecure.status is JobStatus.COMPLETED, insecure.error


def test_explicit_tls_against_a_plain_server_is_refused_clearly(
    ftp_server: Callable[..., FtpServer], run_ftp_job: Runner
) -> None:
    job = run_ftp_job(ftp_service(ftp_server("plain").port, tls="explicit"))
    assert job.status is JobStatus.FAILED
    assert "TLS handshake failed" in (job.error or "")


def test_active_mode(ftp_server: Callable[..., FtpServer], run_ftp_job: Runner) -> None:
    server = ftp_server()
    job = run_ftp_job(ftp_service(server.port, passive=False))
    assert job.status is JobStatus.COMPLETED, job.error
    assert any(c.startswith(("PORT", "EPRT")) for c in server.state["commands"])


def test_connection_cap_with_many_parallel_files(
    ftp_server: Callable[..., FtpServer], run_ftp_job: Runner, tmp_path: Path
) -> None:
    files: dict[str, bytes | None] = {f"outgoing/f{i:03d}.csv": GOOD_CSV for i in range(40)}
    server = ftp_server("plain", make_tree(tmp_path / "many", files))
    service = ftp_service(server.port, max_connections=3)
    service["concurrency"] = 12
    job = run_ftp_job(service)
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.counts.valid == 40
    assert server.state["commands"].count("USER alice") <= 3  # connections are reused


def test_symlinks_to_files_are_fetched_links_to_folders_are_not_followed(
    ftp_server: Callable[..., FtpServer], run_ftp_job: Runner, ftp_root: Path
) -> None:
    outgoing = ftp_root / "outgoing"
    os.symlink(outgoing / "2026-11-01.csv", outgoing / "linked.csv")
    os.symlink(outgoing / "nested", outgoing / "loop")
    job = run_ftp_job(ftp_service(ftp_server("nomlsd").port))
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.counts.valid == 5  # the four, plus linked.csv; nothing through loop/


def test_gzip_archive_is_validated(ftp_root: Path) -> None:
    assert gzip.decompress((ftp_root / "outgoing" / "archive.csv.gz").read_bytes()) == GOOD_CSV
