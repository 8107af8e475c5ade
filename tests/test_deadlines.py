"""Every wait honours the job deadline and Ctrl-C: retry sleeps end there (issue 8 §3)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from module_system.config.models import RetryConfig
from module_system.demo.servers import MotoServer
from module_system.errors import JobCancelled, JobTimeout, TransientError
from module_system.results import JobStatus
from module_system.retry import Retrier
from tests.faulty_proxy import faulty_proxy
from tests.helpers import RunJobs
from tests.s3_helpers import s3_service


class RecordingEvent(threading.Event):
    """A cancel flag that remembers how long it was asked to wait."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return super().wait(0)


def throttled() -> None:
    raise TransientError("503 SlowDown", retry_after=300, reason="http_503")


def test_a_retry_never_sleeps_past_the_deadline() -> None:
    import time

    cancel = RecordingEvent()
    retrier = Retrier(RetryConfig(attempts=5), cancel, deadline=time.monotonic() + 5)
    with pytest.raises(JobTimeout, match="deadline comes before the next retry"):
        retrier.call(throttled, "GET /items")
    assert cancel.waits == []  # it did not start a 300 s sleep it could not finish


def test_ctrl_c_ends_a_retry_sleep() -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(JobCancelled):
        Retrier(RetryConfig(attempts=5), cancel).call(throttled, "GET /items")


def test_a_job_that_keeps_being_throttled_times_out_instead_of_sleeping(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str
) -> None:
    body = json.dumps({"id": 1, "day": "2026-05-05"}).encode()
    s3.put_object(Bucket=source_bucket, Key="in/a.json", Body=body)

    def throttle_downloads(method: str, path: str, n: int) -> str | None:
        return "503" if method == "GET" and "/in/a.json" in path else None

    with faulty_proxy(s3_server.url, throttle_downloads) as proxy:
        retry = {"attempts": 10, "backoff": 600, "max_backoff": 600}
        service = s3_service(proxy.url, source_bucket, timeout=1, retry=retry)
        job = run_jobs({"svc": service}, [("j", "svc")]).jobs[0]
    assert job.status is JobStatus.TIMED_OUT, job.error
    assert job.counts.failed == 0  # left for the next run, not recorded as failed
