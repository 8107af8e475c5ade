"""The direct path (module_system.aws_direct): GetObject, PutObject and CopyObject of small
files sent as single signed requests. It must land exactly what botocore lands, and hand
anything but success back to botocore."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from module_system.aws_direct import USER_AGENT
from module_system.demo.servers import MotoServer
from module_system.results import JobResult, JobStatus
from tests.faulty_proxy import FaultRule, FaultyProxy, faulty_proxy
from tests.helpers import RunJobs, read_json
from tests.s3_helpers import s3_service

NAMES = ["a.json", "with space.json", "ünï/cödé+1.json", "bad.json"]
DIRECT = USER_AGENT.rsplit(" ", 1)[-1]  # "(direct)"


def seed(s3: Any, bucket: str) -> None:
    for n, name in enumerate(NAMES):
        document = {"id": "x" if name == "bad.json" else n, "day": "2026-05-05"}
        s3.put_object(Bucket=bucket, Key=f"in/{name}", Body=json.dumps(document).encode())


def landed(s3: Any, bucket: str, prefix: str) -> dict[str, tuple[bytes, Any, Any, Any]]:
    """Every object under ``prefix`` but the manifest: body, checksum, type and the
    metadata that does not name the job or run."""
    found = {}
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []):
        key = obj["Key"]
        if "/_manifests/" in key or key.endswith(".error.json"):  # they name the run
            continue
        head = s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        metadata = {k: v for k, v in head["Metadata"].items() if k not in ("job-id", "run-id")}
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        found[key[len(prefix) :]] = (body, head.get("ChecksumSHA256"), head["ContentType"],
                                     metadata)  # fmt: skip
    return found


def object_requests(proxy: FaultyProxy) -> dict[str, list[str]]:
    """Paths of the requests for single objects (not listings), by User-Agent: botocore's
    or the direct path's."""
    found: dict[str, list[str]] = {"direct": [], "botocore": []}
    for method, path, agent in proxy.seen:
        if "?" not in path and method in ("GET", "PUT"):
            found["direct" if agent.endswith(DIRECT) else "botocore"].append(f"{method} {path}")
    return found


def fault_once(fault: str, picks: Callable[[str, str], bool]) -> FaultRule:
    """``fault`` on the first request of each method and path that ``picks`` chooses."""
    done: set[tuple[str, str]] = set()

    def rule(method: str, path: str, n: int) -> str | None:
        if not picks(method, path) or (method, path) in done:
            return None
        done.add((method, path))
        return fault

    return rule


def run_behind_proxy(
    run_jobs: RunJobs, s3_server: MotoServer, landing: dict[str, Any], source_bucket: str,
    rule: FaultRule,
) -> tuple[JobResult, FaultyProxy]:  # fmt: skip
    """One job of the test service, source and landing both reached through the proxy."""
    with faulty_proxy(s3_server.url, rule) as proxy:
        proxied = {**landing, "endpoint_url": proxy.url}
        job = run_jobs({"svc": s3_service(proxy.url, source_bucket)}, [("j", "svc")],
                       landing=proxied).jobs[0]  # fmt: skip
    return job, proxy


@pytest.mark.parametrize("server_side_copy", [True, False], ids=["copy", "upload"])
def test_direct_requests_land_exactly_what_botocore_lands(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    landing: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    server_side_copy: bool,
) -> None:  # fmt: skip
    seed(s3, source_bucket)
    results = {}
    for direct in ("1", "0"):
        monkeypatch.setenv("MODULE_SYSTEM_S3_DIRECT", direct)
        with faulty_proxy(s3_server.url, lambda method, path, n: None) as proxy:
            proxied = {**landing, "endpoint_url": proxy.url, "prefix": f"run{direct}",
                       "server_side_copy": server_side_copy,
                       "server_side_copy_min_mb": 0}  # fmt: skip
            services = {"svc": s3_service(proxy.url, source_bucket)}
            job = run_jobs(services, [(f"j{direct}", "svc")], landing=proxied,
                           state_url=f"sqlite:///{tmp_path / direct}.db").jobs[0]  # fmt: skip
        assert job.status is JobStatus.COMPLETED, job.error
        assert (job.counts.valid, job.counts.invalid) == (3, 1)
        requests = object_requests(proxy)
        if direct == "1":  # all but the error report, which botocore sends (put_json)
            assert [p.rsplit("/", 1)[-1] for p in requests["botocore"]] == ["bad.json.error.json"]
            assert len(requests["direct"]) == 2 * len(NAMES) + 1  # a GET and a PUT, the manifest
        else:
            assert requests["direct"] == [] and len(requests["botocore"]) == 2 * len(NAMES) + 2
        manifest = read_json(
            s3, landing_bucket, f"run{direct}/data/s3/svc/_manifests/j{direct}.json"
        )
        transfers = {entry["transfer"] for entry in manifest["files"]}
        assert transfers == {"copy" if server_side_copy else "upload"}
        results[direct] = landed(s3, landing_bucket, f"run{direct}/")
    assert results["1"] == results["0"]
    assert len(results["1"]) == len(NAMES)


def test_anything_but_success_is_made_again_through_botocore(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    landing: dict[str, Any],
) -> None:  # fmt: skip
    """A 503 on a direct GET or PUT: the call goes to botocore, whose request succeeds."""
    seed(s3, source_bucket)
    objects = fault_once("503", lambda method, path: "?" not in path and method in ("GET", "PUT"))
    job, proxy = run_behind_proxy(run_jobs, s3_server, landing, source_bucket, objects)
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.retries == {}  # botocore's own request succeeded: no retry of ours was needed
    by_object: dict[str, list[bool]] = {}
    for method, path, agent in proxy.seen:
        if method == "GET" and path.startswith(f"/{source_bucket}/in/"):
            by_object.setdefault(path, []).append(agent.endswith(DIRECT))
    assert list(by_object.values()) == [[True, False]] * len(NAMES)
    for name in NAMES[:3]:
        body = s3.get_object(Bucket=landing_bucket, Key=f"data/s3/svc/validated/{name}")
        source = s3.get_object(Bucket=source_bucket, Key=f"in/{name}")
        assert body["Body"].read() == source["Body"].read()


def test_a_download_that_does_not_match_its_checksum_is_fetched_again(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str,
    landing: dict[str, Any],
) -> None:  # fmt: skip
    """As botocore does, the direct GET asks for the object's checksum and checks the body
    against it: a mismatch (here the proxy reports a wrong SHA-256 once per object) is a
    transient error, retried, and the right bytes land."""
    bodies = {}
    for n in range(3):
        bodies[n] = json.dumps({"id": n, "day": "2026-05-05"}).encode()
        s3.put_object(Bucket=source_bucket, Key=f"in/{n}.json", Body=bodies[n],
                      ChecksumAlgorithm="SHA256")  # fmt: skip
    downloads = fault_once("bad_checksum", lambda method, path: method == "GET" and "/in/" in path)
    job, proxy = run_behind_proxy(run_jobs, s3_server, landing, source_bucket, downloads)
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.retries == {"checksum_mismatch": 3}
    gets = [agent for method, path, agent in proxy.seen if method == "GET" and "/in/" in path]
    assert len(gets) == 6 and all(agent.endswith(DIRECT) for agent in gets)
    for n, body in bodies.items():
        landed = s3.get_object(Bucket=landing_bucket, Key=f"data/s3/svc/validated/{n}.json")
        assert landed["Body"].read() == body


def test_a_put_is_signed_with_the_hash_already_known_without_reading_the_body() -> None:
    """The signer takes the SHA-256 the lander computed instead of hashing the body again."""
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from module_system.aws_direct import _KnownPayloadSigner

    class Unreadable(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            raise AssertionError("the body was read to sign it")

    request = AWSRequest("PUT", "http://127.0.0.1:9/bucket/key", data=Unreadable(b"abc"))
    known = hashlib.sha256(b"abc").hexdigest()
    request.context["payload_sha256"] = known
    _KnownPayloadSigner(Credentials("id", "secret"), "s3", "us-east-1").add_auth(request)
    assert request.headers["X-Amz-Content-SHA256"] == known
    assert request.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=id/")
