"""S3 → S3 on one endpoint: validated files land by server-side copy of exactly the
version that was validated, and fall back to an upload when that cannot be proven."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from module_system.aws import CopySource
from module_system.config.models import LandingConfig
from module_system.demo.servers import MotoServer
from module_system.landing.uploader import S3Lander
from module_system.results import JobStatus
from tests.faulty_proxy import faulty_proxy
from tests.helpers import RunJobs, read_json
from tests.s3_helpers import s3_service

ROOT = "data/s3/svc/"


@pytest.fixture
def landing(landing: dict[str, Any]) -> dict[str, Any]:
    """Every file copied, however small (by default small new files are uploaded)."""
    return {**landing, "server_side_copy_min_mb": 0}


def put(s3: Any, bucket: str, name: str, document: dict[str, Any]) -> bytes:
    body = json.dumps(document).encode()
    s3.put_object(Bucket=bucket, Key=f"in/{name}", Body=body)
    return body


def stored(s3: Any, bucket: str, key: str) -> tuple[bytes, dict[str, Any]]:
    head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read()), head


def test_same_endpoint_lands_by_copy_with_our_checksum_and_metadata(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str
) -> None:
    good = put(s3, source_bucket, "a.json", {"id": 1, "day": "2026-05-05"})
    put(s3, source_bucket, "bad.json", {"id": "x", "day": "2026-05-05"})
    services = {"svc": s3_service(s3_server.url, source_bucket)}
    job = run_jobs(services, [("j", "svc")]).jobs[0]

    assert job.status is JobStatus.COMPLETED and (job.counts.valid, job.counts.invalid) == (1, 1)
    manifest = read_json(s3, landing_bucket, ROOT + "_manifests/j.json")
    files = {f["key"]: f for f in manifest["files"]}
    assert files["a.json"]["transfer"] == "copy" and files["bad.json"]["transfer"] == "copy"
    body, head = stored(s3, landing_bucket, ROOT + "validated/a.json")
    assert body == good
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(good).digest()).decode()
    assert head["Metadata"]["sha256"] == hashlib.sha256(good).hexdigest()
    assert head["Metadata"]["verdict"] == "valid"
    assert head["Metadata"]["source-uri"] == f"s3://{source_bucket}/in/a.json"


def test_another_endpoint_lands_by_upload(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    landing: dict[str, Any],
) -> None:  # fmt: skip
    good = put(s3, source_bucket, "a.json", {"id": 1, "day": "2026-05-05"})
    with faulty_proxy(s3_server.url, lambda method, path, n: None) as proxy:
        proxied = {**landing, "endpoint_url": proxy.url}  # another endpoint
        services = {"svc": s3_service(s3_server.url, source_bucket)}
        run_jobs(services, [("j", "svc")], landing=proxied)
    entry = read_json(s3, landing_bucket, ROOT + "_manifests/j.json")["files"][0]
    assert entry["transfer"] == "upload"
    assert stored(s3, landing_bucket, ROOT + "validated/a.json")[0] == good


def test_a_source_changed_after_validation_is_not_copied_the_validated_bytes_are_uploaded(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    landing: dict[str, Any],
) -> None:  # fmt: skip
    validated = put(s3, source_bucket, "a.json", {"id": 1, "day": "2026-05-05"})
    changed: list[bool] = []

    def change_source_before_landing(method: str, path: str, n: int) -> str | None:
        if method == "PUT" and f"/{landing_bucket}/data/" in path and not changed:
            changed.append(True)  # the source object changes between fetch and copy
            put(s3, source_bucket, "a.json", {"id": "now invalid", "day": "2026-05-05"})
        return None

    with faulty_proxy(s3_server.url, change_source_before_landing) as proxy:
        proxied = {**landing, "endpoint_url": proxy.url}
        services = {"svc": s3_service(proxy.url, source_bucket)}
        job = run_jobs(services, [("j", "svc")], landing=proxied).jobs[0]

    assert changed and job.status is JobStatus.COMPLETED and job.counts.valid == 1
    entry = read_json(s3, landing_bucket, ROOT + "_manifests/j.json")["files"][0]
    assert entry["transfer"] == "upload"  # CopySourceIfMatch refused the new version
    assert stored(s3, landing_bucket, ROOT + "validated/a.json")[0] == validated


def test_one_client_per_connection_whatever_its_bucket_or_secret_key() -> None:
    """A source and a landing on the same endpoint and keys share one client (one session,
    one connection pool); a different secret key never shares one."""
    from module_system.aws import shared_client
    from module_system.config.models import LandingConfig, S3Connection
    from module_system.sources.s3 import S3SourceConfig

    connection = {"endpoint_url": "http://127.0.0.1:9", "region": "us-east-1",
                  "aws_access_key_id": "AKIA", "aws_secret_access_key": "one"}  # fmt: skip
    source = S3SourceConfig.model_validate({**connection, "bucket": "src", "prefix": "in/"})
    landing = LandingConfig.model_validate({**connection, "bucket": "landing"})
    other_key = S3Connection.model_validate({**connection, "aws_secret_access_key": "two"})
    other_region = S3Connection.model_validate({**connection, "region": "eu-west-1"})
    assert shared_client(source) is shared_client(landing)
    assert shared_client(landing) is shared_client(S3Connection.model_validate(connection))
    assert shared_client(other_key) is not shared_client(landing)
    assert shared_client(other_region) is not shared_client(landing)


def test_small_new_files_are_uploaded_and_replacements_copied(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    landing: dict[str, Any],
) -> None:  # fmt: skip
    """With the default ``server_side_copy_min_mb`` (1 MB): a small new file is uploaded (one
    request either way); once it changes, the new version replaces it by a checked copy
    rather than through a staging upload."""
    put(s3, source_bucket, "a.json", {"id": 1, "day": "2026-05-05"})
    services = {"svc": s3_service(s3_server.url, source_bucket)}
    default = {**landing, "server_side_copy_min_mb": 1}
    run_jobs(services, [("j1", "svc")], landing=default)
    changed = put(s3, source_bucket, "a.json", {"id": 2, "day": "2026-05-06"})
    run_jobs(services, [("j2", "svc")], landing=default)

    first = read_json(s3, landing_bucket, ROOT + "_manifests/j1.json")["files"][0]
    second = read_json(s3, landing_bucket, ROOT + "_manifests/j2.json")["files"][0]
    assert (first["transfer"], second["transfer"]) == ("upload", "copy")
    body, head = stored(s3, landing_bucket, ROOT + "validated/a.json")
    assert body == changed
    assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(changed).digest()).decode()


def test_a_source_bucket_refused_once_is_uploaded_from_and_other_buckets_still_copied(
    landing: dict[str, Any],
) -> None:
    """A Dask worker shares one lander between services: a refusal is remembered for the
    source bucket refused, not for every source."""
    lander = S3Lander(LandingConfig.model_validate(landing))
    refused, other = (CopySource(landing["endpoint_url"], None, bucket, "in/a.json", "etag")
                      for bucket in ("refused-bucket", "other-bucket"))  # fmt: skip
    size = 2 * 1024 * 1024
    assert lander.copies(refused, size, replacing=False) and lander.copies(other, size, False)
    lander.refuse_copies(refused)
    assert not lander.copies(refused, size, replacing=True)
    assert lander.copies(other, size, replacing=False)
