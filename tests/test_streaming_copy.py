"""A big new file from an S3 source on the landing's endpoint is copied server-side while
it downloads and validates (``UploadPartCopy`` of the version being fetched). The copy
appears only once the file proved valid and S3's checksum of it equals ours of the
downloaded bytes; a copy that is refused or cannot be proven leaves nothing behind, and
the validated bytes land from disk. Against the real S3 server, some through a proxy."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from module_system.demo.servers import MotoServer
from module_system.results import JobStatus
from tests.faulty_proxy import FaultRule, FaultyProxy, faulty_proxy
from tests.helpers import RunJobs, list_keys, read_json
from tests.s3_helpers import s3_service
from tests.test_overlapped_checks import big_ndjson, cut_first_download, pipeline_log

ROOT = "data/s3/svc/"
KEY = ROOT + "validated/big.ndjson"


@pytest.fixture
def multipart(landing: dict[str, Any]) -> dict[str, Any]:
    """5 MB multipart threshold, so that a test-sized file streams; server-side copy on
    (the default)."""
    return {**landing, "multipart_threshold_mb": 5, "multipart_chunksize_mb": 5}


def one_part_checksum(data: bytes) -> str:
    """S3's ChecksumSHA256 of a one-part multipart object: the SHA-256 of the part's."""
    return base64.b64encode(hashlib.sha256(hashlib.sha256(data).digest()).digest()).decode()


def manifest_files(s3: Any, bucket: str) -> dict[str, dict[str, Any]]:
    return {f["key"]: f for f in read_json(s3, bucket, ROOT + "_manifests/j.json")["files"]}


def no_uploads_left(s3: Any, bucket: str) -> bool:
    return s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize(
    ("copy", "activity", "transfer"), [(True, "copying", "copy"), (False, "uploading", "stream")]
)
def test_a_big_valid_file_lands_while_it_downloads_and_an_invalid_one_never_appears(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    multipart: dict[str, Any], copy: bool, activity: str, transfer: str,
) -> None:  # fmt: skip
    """Copied server-side (the default, one endpoint), or uploaded in parts when copies are
    off; completed only once valid either way."""
    good = big_ndjson(22)
    bad = big_ndjson(22, last_line='{"id": "x", "day": "2026-01-02"}\n')
    s3.put_object(Bucket=source_bucket, Key="in/big.ndjson", Body=good)
    s3.put_object(Bucket=source_bucket, Key="in/bad.ndjson", Body=bad)
    with pipeline_log() as messages:
        services = {"svc": s3_service(s3_server.url, source_bucket)}
        landing = {**multipart, "server_side_copy": copy}
        job = run_jobs(services, [("j", "svc")], landing=landing).jobs[0]

    assert job.status is JobStatus.COMPLETED, job.error
    assert (job.counts.valid, job.counts.invalid) == (1, 1)
    assert sum(f"validating and {activity} while it downloads" in m for m in messages.lines) == 2
    assert not any("during the download failed" in m for m in messages.lines)
    assert manifest_files(s3, landing_bucket)["big.ndjson"]["transfer"] == transfer
    head = s3.head_object(Bucket=landing_bucket, Key=KEY, ChecksumMode="ENABLED")
    if copy:  # one part: the copy's checksum is that of our one part digest
        assert head["ChecksumSHA256"].partition("-")[0] == one_part_checksum(good)
    assert head["ContentLength"] == len(good)
    assert head["Metadata"]["verdict"] == "valid"
    assert head["Metadata"]["source-uri"] == f"s3://{source_bucket}/in/big.ndjson"
    assert s3.get_object(Bucket=landing_bucket, Key=KEY)["Body"].read() == good
    keys = list_keys(s3, landing_bucket)
    assert ROOT + "validated/bad.ndjson" not in keys  # never completed
    assert ROOT + "quarantine/bad.ndjson" in keys
    assert no_uploads_left(s3, landing_bucket)


def run_proxied(
    run_jobs: RunJobs, s3_server: MotoServer, source_bucket: str, multipart: dict[str, Any],
    rule: FaultRule,
) -> tuple[Any, FaultyProxy, list[str]]:  # fmt: skip
    """The job with source and landing both behind one proxy (one endpoint): the job, the
    proxy (what it saw) and the pipeline's log messages."""
    with faulty_proxy(s3_server.url, rule) as proxy, pipeline_log() as messages:
        proxied = {**multipart, "endpoint_url": proxy.url}
        services = {"svc": s3_service(proxy.url, source_bucket)}
        job = run_jobs(services, [("j", "svc")], landing=proxied).jobs[0]
    return job, proxy, messages.lines


def test_a_refused_copy_leaves_nothing_and_the_validated_bytes_are_uploaded(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    multipart: dict[str, Any],
) -> None:  # fmt: skip
    data = big_ndjson(18)
    s3.put_object(Bucket=source_bucket, Key="in/big.ndjson", Body=data)
    refused: list[str] = []

    def refuse_the_part_copy(method: str, path: str, n: int) -> str | None:
        # the first part request is the copy's: it starts before the download ends
        if method == "PUT" and "partNumber=" in path and not refused:
            refused.append(path)
            return "403"
        return None

    job, proxy, messages = run_proxied(
        run_jobs, s3_server, source_bucket, multipart, refuse_the_part_copy
    )

    assert refused and job.status is JobStatus.COMPLETED, job.error
    assert refused[0] in proxy.copies  # the refused request was the part copy
    assert any("server-side copy during the download failed" in m for m in messages)
    assert manifest_files(s3, landing_bucket)["big.ndjson"]["transfer"] == "upload"
    assert s3.get_object(Bucket=landing_bucket, Key=KEY)["Body"].read() == data
    # uploaded in the landing's 5 MB parts, not in the copy's one part
    assert s3.head_object(Bucket=landing_bucket, Key=KEY)["ETag"].endswith('-4"')
    assert no_uploads_left(s3, landing_bucket)


def test_a_copy_whose_checksum_differs_is_removed_and_the_file_lands_again(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    multipart: dict[str, Any],
) -> None:  # fmt: skip
    data = big_ndjson(18)
    s3.put_object(Bucket=source_bucket, Key="in/big.ndjson", Body=data)
    misreported: list[int] = []
    deleted: list[int] = []

    def misreport_the_copy(method: str, path: str, n: int) -> str | None:
        if method == "HEAD" and path.startswith(f"/{landing_bucket}/{KEY}") and not misreported:
            misreported.append(n)  # as if the copy held other bytes than we validated
            return "bad_checksum"
        if method == "DELETE" and path.startswith(f"/{landing_bucket}/{KEY}"):
            deleted.append(n)
        return None

    job, _, messages = run_proxied(
        run_jobs, s3_server, source_bucket, multipart, misreport_the_copy
    )

    assert misreported and job.status is JobStatus.COMPLETED, job.error
    assert any("server-side copy during the download failed" in m for m in messages)
    assert deleted and deleted[0] > misreported[0]  # the unproven copy was removed at once
    # the unproven copy was deleted; a plain, checked CopyObject landed the file again
    head = s3.head_object(Bucket=landing_bucket, Key=KEY, ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert head["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert s3.get_object(Bucket=landing_bucket, Key=KEY)["Body"].read() == data
    assert no_uploads_left(s3, landing_bucket)


@pytest.mark.parametrize("copy", [True, False], ids=["copy", "upload"])
def test_a_download_cut_short_leaves_nothing_behind_and_the_retry_lands_the_file(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    multipart: dict[str, Any], copy: bool,
) -> None:  # fmt: skip
    data = big_ndjson(18)
    s3.put_object(Bucket=source_bucket, Key="in/big.ndjson", Body=data)
    cut: list[int] = []
    landing = {**multipart, "server_side_copy": copy}
    rule = cut_first_download(source_bucket, cut)
    job, proxy, _ = run_proxied(run_jobs, s3_server, source_bucket, landing, rule)

    assert cut and job.status is JobStatus.COMPLETED, job.error
    assert bool(proxy.copies) is copy  # the copy began with the download that was cut
    assert job.retries.get("short_read") == 1
    assert s3.get_object(Bucket=landing_bucket, Key=KEY)["Body"].read() == data
    assert no_uploads_left(s3, landing_bucket)  # the streamed copy or upload was aborted


def test_a_copied_part_reported_with_other_bytes_is_never_completed(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    multipart: dict[str, Any],
) -> None:  # fmt: skip
    """S3 reports each copied part's SHA-256: one that differs from ours of the downloaded
    bytes stops the copy before it is completed, so it never appears."""
    data = big_ndjson(18)
    s3.put_object(Bucket=source_bucket, Key="in/big.ndjson", Body=data)

    def misreport_the_part(method: str, path: str, n: int) -> str | None:
        if method == "PUT" and "partNumber=" in path:
            return "bad_part_checksum"
        return None

    job, proxy, messages = run_proxied(
        run_jobs, s3_server, source_bucket, multipart, misreport_the_part
    )

    assert proxy.copies and job.status is JobStatus.COMPLETED, job.error
    assert any("part 1 of the copy has SHA-256" in m for m in messages)
    completions = [p for m, p in [s[:2] for s in proxy.seen] if m == "POST" and "uploadId=" in p]
    assert completions == []  # never completed, so never visible
    assert s3.get_object(Bucket=landing_bucket, Key=KEY)["Body"].read() == data  # by CopyObject
    assert no_uploads_left(s3, landing_bucket)
