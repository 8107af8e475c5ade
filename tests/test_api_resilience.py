"""Retries, throttling, failures that must not be retried, unreadable responses and the
shared rate limit."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from module_system.demo.servers import free_port
from module_system.errors import TransientError
from module_system.sources.http import ratelimit
from module_system.sources.http.client import ApiClient, retry_after_seconds
from module_system.sources.http.egress import EgressPolicy
from module_system.sources.http.ratelimit import RateLimitConfig, TokenBucket, bucket_for
from module_system.sources.http.transport import make_client
from module_system.state import StateStore
from tests import api_server as harness
from tests.api_server import ApiServer, RunApiJobs
from tests.helpers import read_json

ITEMS = {"records_path": "items"}
SCHEMA = {
    "type": "object",
    "required": ["id", "temperature"],
    "properties": {"temperature": {"type": "number"}},
}


def retry_waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    found = (re.search(r"retrying in ([0-9.]+)s", r.getMessage()) for r in caplog.records)
    return [float(m.group(1)) for m in found if m]


def test_429_retry_after_seconds_is_honoured(
    run: Any, api: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    job = run({"url": "/throttled", **ITEMS})
    assert job.result.status == "completed", job.result.error
    assert len(api.paths("/throttled")) == 2
    assert retry_waits(caplog) == [0.2]  # the server's value, not the 0.05s backoff cap


def test_429_retry_after_http_date_is_honoured(
    run: Any, api: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    api.state.retry_after = "date"  # two seconds ahead, at the header's one-second resolution
    job = run({"url": "/throttled", **ITEMS})
    assert job.result.status == "completed", job.result.error
    [wait] = retry_waits(caplog)
    assert 1.0 < wait <= 2.0  # the date's distance, far above the 0.05s backoff cap


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:30 GMT", now) == 30
    assert retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now) == 0  # already past
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_flaky_503s_are_retried(run: Any, api: ApiServer) -> None:
    job = run({"url": "/flaky?fail=2", **ITEMS})
    assert job.result.status == "completed", job.result.error
    assert len(api.paths("/flaky")) == 3
    assert job.pages[0]["details"]["records"] == 3
    assert job.result.retries == {"http_503": 2}  # counted by reason in the job's report


def test_503s_past_the_attempts_fail_the_job(run: Any, api: ApiServer) -> None:
    job = run({"url": "/flaky?fail=9", **ITEMS})
    assert job.result.status == "failed"
    assert "HTTP 503" in job.result.error and "try again" in job.result.error
    assert len(api.paths("/flaky")) == 3  # the service's retry.attempts


def test_403_fails_at_once_with_status_url_and_body(run: Any, api: ApiServer) -> None:
    job = run({"url": "/forbidden?api_key=k-123456", **ITEMS})
    assert job.result.status == "failed"
    error = job.result.error
    assert "HTTP 403" in error and "/forbidden?api_key=***" in error
    assert "station ST001 is not in your plan" in error
    assert len(api.paths("/forbidden")) == 1


def test_connection_errors_are_transient() -> None:
    url = f"http://127.0.0.1:{free_port()}/nothing-listens"
    policy = EgressPolicy.build([url], [url])
    client = ApiClient(make_client(policy, timeout=5), TokenBucket(None), policy)
    with pytest.raises(TransientError, match="ConnectError") as caught:
        client.send(client.build_request("GET", url))
    assert caught.value.reason == "connect_failed"
    client.close()


def test_malformed_json_is_quarantined_and_the_cursor_kept(
    run: Any, api: ApiServer, s3: Any, landing_bucket: str, state_url: str
) -> None:
    incremental = {"cursor_field": "updated_at", "param": "since"}
    source = {"url": "/malformed", "pagination": {"type": "page_number"}, **ITEMS}
    job = run({**source, "incremental": incremental}, validation={"json_schema": SCHEMA})
    assert job.result.status == "completed", job.result.error
    assert (job.result.counts.valid, job.result.counts.invalid) == (1, 1)
    assert len(api.paths("/malformed")) == 2  # pagination stops at the unreadable page
    bad = next(p for p in job.pages if p["outcome"] == "quarantined")
    assert "not JSON" in bad["details"]["problem"]
    report = read_json(s3, landing_bucket, bad["landing_key"] + ".error.json")
    assert "not parseable JSON" in report["errors"][0]["message"]
    cursors = StateStore(state_url).cursors_for("weather")
    assert cursors.get("incremental:updated_at") is None


def test_missing_records_path_is_quarantined(run: Any, s3: Any, landing_bucket: str) -> None:
    job = run({"url": "/missing", "records_path": "data.items"})
    assert job.result.status == "completed", job.result.error
    [page] = job.pages
    assert page["outcome"] == "quarantined"
    report = read_json(s3, landing_bucket, page["landing_key"] + ".error.json")
    assert report["errors"] == [
        {"message": "no records: the response has no 'data.items'", "location": "$.data.items"}
    ]


def test_invalid_records_are_reported_by_index_and_path(
    run: Any, api: ApiServer, s3: Any, landing_bucket: str
) -> None:
    api.state.records[12]["temperature"] = "hot"  # page 2, third record
    del api.state.records[14]["id"]
    source = {"url": "/pages", "pagination": {"type": "page_number"}, "records_path": "data.items"}
    job = run(source, validation={"json_schema": SCHEMA})
    assert (job.result.counts.valid, job.result.counts.invalid) == (3, 1)
    bad = next(p for p in job.pages if p["outcome"] == "quarantined")
    assert bad["details"]["page"] == 2 and bad["error_count"] == 2
    report = read_json(s3, landing_bucket, bad["landing_key"] + ".error.json")
    locations = sorted(e["location"] for e in report["errors"])
    assert locations == ["$.data.items[2].temperature", "$.data.items[4]"]
    assert report["records"] == 10


def test_rate_limit_is_shared_by_parallel_jobs(
    api: ApiServer, run_api_jobs: RunApiJobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.reset()
    monkeypatch.setattr(ratelimit, "_buckets", {})
    source = {"url": api.url + "/pages", "pagination": {"type": "page_number"},
              "records_path": "data.items", "rate_limit": {"requests_per_second": 50}}  # fmt: skip
    services = {"one": harness.service(source), "two": harness.service(source)}
    runs = run_api_jobs(services)
    assert [r.result.status for r in runs] == ["completed", "completed"]
    [bucket] = ratelimit._buckets.values()  # one bucket for the host, used by both jobs
    assert bucket.granted == len(api.paths("/pages")) == 8
    assert bucket.rate == 50


def test_token_bucket_accounting() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=2, clock=lambda: now[0])
    waits = [bucket.reserve() for _ in range(4)]
    assert waits == pytest.approx([0, 0, 0.1, 0.2])  # the burst, then one per 1/rate
    now[0] = 1.0
    assert bucket.reserve() == 0  # refilled while idle
    bucket.pause(3)
    assert bucket.reserve() == pytest.approx(3)  # a 429's Retry-After holds the host
    assert bucket.granted == 6


def test_buckets_are_per_host_and_the_strictest_limit_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "_buckets", {})
    a = bucket_for("api.example.com", RateLimitConfig(requests_per_second=10, burst=5))
    b = bucket_for("API.example.com", RateLimitConfig(requests_per_second=2, burst=3))
    c = bucket_for("other.example.com", None)
    assert a is b and (a.rate, a.burst) == (2, 3)
    assert c is not a and c.rate is None
