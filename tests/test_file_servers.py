"""FTP and SFTP → S3 end to end: the scenarios both protocols share, each run against a
pyftpdlib and an asyncssh server on loopback (the ``remote`` fixture)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from module_system.results import JobResult, JobStatus
from tests.ftp_servers import GOOD_CSV, PASSWORD, FileServer, make_tree
from tests.helpers import RunJob, list_keys, read_json, sha256

LANDED = {"2026-11-01.csv", "nested/deep/2026-11-02.csv", "with space é.csv", "archive.csv.gz"}
# How each protocol words a file the server refuses to read.
READ_REFUSED = {"ftp": "download refused (550", "sftp": "download: permission denied"}

Servers = Callable[..., FileServer]


def root(protocol: str) -> str:
    return f"data/{protocol}/svc/"


def assert_landed(
    s3: Any, landing: dict[str, Any], ftp_root: Path, job: JobResult, uri_prefix: str
) -> None:
    """The tree of ``make_tree`` landed: four valid files, one quarantined, no README;
    every source URI starts with ``uri_prefix`` and none holds the password."""
    assert job.status is JobStatus.COMPLETED, job.error
    assert (job.counts.listed, job.counts.valid, job.counts.invalid) == (5, 4, 1)
    prefix = root(job.source_type)
    keys = list_keys(s3, landing["bucket"], prefix)
    for name in LANDED:
        assert prefix + "validated/" + name in keys
    assert prefix + "quarantine/bad.csv" in keys
    assert prefix + "quarantine/bad.csv.error.json" in keys
    assert not any("README" in key for key in keys)
    manifest = read_json(s3, landing["bucket"], f"{prefix}_manifests/{job.job_id}.json")
    for entry in manifest["files"]:
        source = (ftp_root / "outgoing" / entry["key"]).read_bytes()
        assert entry["sha256"] == sha256(source), entry["key"]
        assert entry["version"].startswith(f"{len(source)}:")  # size + mtime, every format
        assert entry["source_uri"].startswith(uri_prefix)
        assert PASSWORD not in str(entry)


@pytest.mark.parametrize("flavour", ["ftp", "ftp nomlsd", "ftp dos", "sftp"])
def test_lands_nested_spaces_and_non_ascii_from_every_listing_format(
    flavour: str, file_servers: Servers, run_job: RunJob, s3: Any,
    landing: dict[str, Any], ftp_root: Path,
) -> None:  # fmt: skip
    protocol, _, kind = flavour.partition(" ")
    server = file_servers(protocol, kind=kind or "plain")
    job = run_job(server.service())
    assert_landed(s3, landing, ftp_root, job, f"{protocol}://alice@127.0.0.1:{server.port}/")
    if protocol == "ftp":  # MLSD where offered, else LIST in Unix or DOS format
        assert ("MLSD" in " ".join(server.commands)) == (kind == "")


def test_quarantine_report_names_row_and_column(
    remote: FileServer, run_job: RunJob, s3: Any, landing: dict[str, Any]
) -> None:
    run_job(remote.service())
    report = read_json(
        s3, landing["bucket"], root(remote.protocol) + "quarantine/bad.csv.error.json"
    )
    assert report["validator"] == "csv" and report["error_count"] == 4
    assert {"location": "row 2, column 'amount'",
            "message": "constraint minimum: '-5' is below 0"} in report["errors"]  # fmt: skip
    where = f"{remote.protocol}://alice@127.0.0.1:{remote.port}/outgoing/bad.csv"
    assert report["source_uri"] == where


def test_incremental_rerun_skips_unchanged_and_fetches_changed(
    remote: FileServer, run_job: RunJob, ftp_root: Path
) -> None:
    first = run_job(remote.service())
    assert first.counts.fetched == 5
    second = run_job(remote.service())
    assert (second.counts.skipped, second.counts.fetched) == (5, 0)
    (ftp_root / "outgoing" / "2026-11-01.csv").write_bytes(GOOD_CSV + b"3,1,2026-11-03\n")
    third = run_job(remote.service())
    assert (third.counts.fetched, third.counts.valid, third.counts.skipped) == (1, 1, 4)
    (ftp_root / "outgoing" / "bad.csv").write_bytes(GOOD_CSV)  # a quarantined file, fixed
    fourth = run_job(remote.service())
    assert (fourth.counts.fetched, fourth.counts.valid) == (1, 1)


def test_connection_dropped_mid_transfer_resumes_and_lands_intact(
    protocol: str, file_servers: Servers, run_job: RunJob, s3: Any,
    landing: dict[str, Any], tmp_path: Path,
) -> None:  # fmt: skip
    big = b"id,amount,day\n" + b"".join(b"%d,%d.5,2026-11-01\n" % (i, i) for i in range(200_000))
    tree = make_tree(tmp_path / "drop-root", {"outgoing/big.csv": big})
    server = file_servers(protocol, tree, drops=1, drop_after=1_000_000)
    job = run_job(server.service())
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.counts.valid == 1 and job.retries.get("connection_lost", 0) >= 1
    assert any(0 < start <= 1_000_000 for start in server.transfer_starts())  # resumed
    key = root(protocol) + "validated/big.csv"
    body = s3.get_object(Bucket=landing["bucket"], Key=key)["Body"].read()
    assert sha256(body) == sha256(big)
    manifest = read_json(s3, landing["bucket"], f"{root(protocol)}_manifests/{job.job_id}.json")
    assert [e["sha256"] for e in manifest["files"]] == [sha256(big)]


def test_file_vanishing_after_listing_is_reported_not_fatal(
    remote: FileServer, run_job: RunJob
) -> None:
    remote.state["vanish"] = "bad.csv"
    job = run_job(remote.service())
    assert job.status is JobStatus.COMPLETED, job.error
    assert (job.counts.vanished, job.counts.valid) == (1, 4)


def test_unreadable_file_fails_with_its_path(
    protocol: str, file_servers: Servers, run_job: RunJob, ftp_root: Path
) -> None:
    (ftp_root / "outgoing" / "locked").mkdir()  # both servers refuse to read under it
    (ftp_root / "outgoing" / "locked" / "secret.csv").write_bytes(GOOD_CSV)
    job = run_job(file_servers(protocol).service())
    assert job.status is JobStatus.FAILED
    assert (job.counts.failed, job.counts.valid) == (1, 4)
    assert "/outgoing/locked/secret.csv" in (job.error or "")
    assert READ_REFUSED[protocol] in (job.error or "")
    assert not job.retries  # a refusal is terminal


def test_wrong_password_fails_at_once_without_retry_or_password(
    remote: FileServer, run_job: RunJob
) -> None:
    secret = "Wr0ng-Secret-Value"
    job = run_job(remote.service(password=secret))
    assert job.status is JobStatus.FAILED
    assert "login refused" in (job.error or "") and "127.0.0.1" in (job.error or "")
    assert secret not in (job.error or "") and PASSWORD not in (job.error or "")
    assert remote.commands.count("PASS") == 1
    assert not job.retries


def test_missing_path_is_a_clear_terminal_error(remote: FileServer, run_job: RunJob) -> None:
    job = run_job(remote.service(path="/no/such/folder"))
    assert job.status is JobStatus.FAILED
    assert "/no/such/folder" in (job.error or "") and "path missing" in (job.error or "")
    assert remote.root_lookups() == 1 and not job.retries


def test_connection_cap_with_many_parallel_files(
    protocol: str, file_servers: Servers, run_job: RunJob, tmp_path: Path
) -> None:
    files: dict[str, bytes | None] = {f"outgoing/f{i:03d}.csv": GOOD_CSV for i in range(40)}
    server = file_servers(protocol, make_tree(tmp_path / "many", files))
    service = server.service(max_connections=3)
    service["concurrency"] = 12
    job = run_job(service)
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.counts.valid == 40
    assert server.connections() <= 3  # connections are reused


# LIST shows links as links; MLSD follows them and shows a link to a folder as a folder.
@pytest.mark.parametrize("flavour", ["ftp nomlsd", "ftp", "sftp"])
def test_symlinks_to_files_are_fetched_links_to_folders_are_not_walked_twice(
    flavour: str, file_servers: Servers, run_job: RunJob, ftp_root: Path
) -> None:
    outgoing = ftp_root / "outgoing"
    os.symlink(outgoing / "2026-11-01.csv", outgoing / "linked.csv")
    os.symlink(outgoing / "nested", outgoing / "loop")
    protocol, _, kind = flavour.partition(" ")
    job = run_job(file_servers(protocol, kind=kind or "plain").service())
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.counts.valid == 5  # the four, plus linked.csv; nested/ once, by either name


@pytest.mark.parametrize("flavour", ["ftp nomlsd", "ftp", "sftp"])
def test_link_loops_do_not_trap_the_walk(
    flavour: str, file_servers: Servers, run_job: RunJob, ftp_root: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    nested = ftp_root / "outgoing" / "nested"
    os.symlink("..", nested / "up")  # outgoing/nested/up/nested/up/... for ever
    os.symlink(".", nested / "deep" / "here")
    os.symlink("ring-b.csv", ftp_root / "outgoing" / "ring-a.csv")  # links to each other
    os.symlink("ring-a.csv", ftp_root / "outgoing" / "ring-b.csv")
    protocol, _, kind = flavour.partition(" ")
    with caplog.at_level(logging.WARNING, logger="module_system.sources"):
        job = run_job(file_servers(protocol, kind=kind or "plain").service())
    assert job.status is JobStatus.COMPLETED, job.error
    assert (job.counts.listed, job.counts.valid, job.counts.invalid) == (5, 4, 1)
    if flavour == "ftp":  # the server showed the links as folders: seen, and said so
        assert "again (a link?)" in caplog.text
    if flavour == "sftp":  # the ring of links cannot be resolved: skipped, and said so
        assert "ring-a.csv: link not followed" in caplog.text
