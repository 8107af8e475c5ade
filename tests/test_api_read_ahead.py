"""The API source's read-ahead: pages whose requests are known (GET, ``page_number`` or
``offset`` pagination with a ``total_path``) are requested up to ``read_ahead`` at a time,
and still land in order, once each, with the stop rules, retries and failures of a job
without it.

Read-ahead starts once pages wait on the API for a couple of milliseconds (see
``LatencyGate``): the test API answers each request after ``latency`` seconds, like one a
network away. Concurrency is counted by the server (requests inside a handler at once,
under a lock), never inferred from timings. To make overlap observable a handler may wait,
briefly, for a given number of requests to be in at once; when that wait runs out it is
not asked again, and nothing is asserted on how long anything took.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from module_system.config.models import RetryConfig
from module_system.sources import api as api_source
from module_system.sources.api import ApiSource, ApiSourceConfig, LatencyGate
from module_system.sources.base import SourceContext
from module_system.state import StateStore
from tests.api_server import JobRun, RunApiJobs, service
from tests.dashboard_helpers import serving

PER_PAGE = 5
PAGES = 40
FIRST_PAGES_ALONE = LatencyGate().least  # requested one at a time before the gate can open


@dataclass
class Api:
    """What the test API serves and what it saw. ``hold``: a request for a page after
    the first ones (requested alone) waits (at most ``hold_timeout`` seconds, once) until
    that many are in at once."""

    pages: int = PAGES
    latency: float = 0.01  # seconds each request takes: read-ahead pays (see LatencyGate)
    hold: int = 0
    hold_timeout: float = 5.0
    empty_page: int | None = None  # answers no records
    fail_once: int | None = None  # answers 503 the first time
    not_found: int | None = None  # answers 404
    token_uses: int = 1000  # /secure: a token is refused after this many pages
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    max_in_flight: int = 0
    requested: list[int] = field(default_factory=list)  # page numbers, in arrival order
    overlapped: threading.Event = field(default_factory=threading.Event)
    tokens: dict[str, int] = field(default_factory=dict)  # token -> uses left
    refused: Counter[str] = field(default_factory=Counter)
    both_refused: dict[str, threading.Event] = field(default_factory=dict)

    def hits(self, number: int) -> int:
        return self.requested.count(number)


def records(number: int) -> list[dict[str, Any]]:
    return [{"id": (number - 1) * PER_PAGE + n, "page": number} for n in range(PER_PAGE)]


def build_app(api: Api) -> Starlette:
    def answer(number: int, **more: Any) -> Response:
        """Page ``number`` (with ``more`` in its body), after counting it in flight (and
        holding it, if asked)."""
        with api.lock:
            api.requested.append(number)
            api.in_flight += 1
            api.max_in_flight = max(api.max_in_flight, api.in_flight)
            if api.hold and api.in_flight >= api.hold:
                api.overlapped.set()
            first_time = api.requested.count(number) == 1
        try:
            time.sleep(api.latency)
            held = api.hold and number > FIRST_PAGES_ALONE
            if held and not api.overlapped.wait(api.hold_timeout):
                api.overlapped.set()  # no overlap came: stop holding
            if number == api.not_found:
                return PlainTextResponse("no such page", status_code=404)
            if number == api.fail_once and first_time:
                return PlainTextResponse("try again", status_code=503)
            items = [] if number == api.empty_page else records(number)
            totals = {"total_pages": api.pages, "total": api.pages * PER_PAGE}
            return JSONResponse({"items": items, "page": number, **totals, **more})
        finally:
            with api.lock:
                api.in_flight -= 1

    def pages(request: Request) -> Response:
        return answer(int(request.query_params.get("page", "1")))

    def offset(request: Request) -> Response:
        start, limit = int(request.query_params["offset"]), int(request.query_params["limit"])
        assert limit == PER_PAGE
        return answer(start // PER_PAGE + 1)

    def cursor(request: Request) -> Response:
        number = int(request.query_params.get("cursor", "1"))
        return answer(number, next_cursor=str(number + 1) if number < api.pages else None)

    def search(request: Request) -> Response:  # POST with page_number
        return answer(int(request.query_params.get("page", "1")))

    def token(request: Request) -> Response:
        with api.lock:
            issued = f"token-{len(api.tokens) + 1}"
            api.tokens[issued] = api.token_uses
        return JSONResponse({"access_token": issued, "expires_in": 3600})

    def secure(request: Request) -> Response:
        issued = request.headers.get("authorization", "").removeprefix("Bearer ")
        with api.lock:
            accepted = api.tokens.get(issued, 0) > 0
            if accepted:
                api.tokens[issued] -= 1
            else:
                api.refused[issued] += 1
                both = api.both_refused.setdefault(issued, threading.Event())
                if api.refused[issued] >= 2:
                    both.set()
        if not accepted:  # held until a second request is refused the same token
            if not both.wait(2.0):
                both.set()
            return PlainTextResponse("token used up", status_code=401)
        return pages(request)

    return Starlette(
        routes=[
            Route("/pages", pages),
            Route("/offset", offset),
            Route("/cursor", cursor),
            Route("/search", search, methods=["POST"]),
            Route("/token", token, methods=["POST"]),
            Route("/secure", secure),
        ]
    )


@pytest.fixture
def api() -> Iterator[Api]:
    state = Api()
    with serving(build_app(state)) as url:
        state.url = url
        yield state


PAGE_NUMBER = {"type": "page_number", "total_path": "total_pages"}
OFFSET = {"type": "offset", "limit": PER_PAGE, "total_path": "total"}


def source(api: Api, path: str = "/pages", **extra: Any) -> dict[str, Any]:
    return {"url": api.url + path, "pagination": PAGE_NUMBER, "records_path": "items", **extra}


def run_one(run_api_jobs: RunApiJobs, src: dict[str, Any], **extra: Any) -> JobRun:
    [job] = run_api_jobs({"weather": service(src, **extra)})
    assert not read_ahead_threads()
    return job


def read_ahead_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if "read-ahead" in t.name]


def landed_pages(job: JobRun, s3: Any, bucket: str) -> list[dict[str, Any]]:
    """Every landed response body, in key order (which is page order)."""
    bodies: list[dict[str, Any]] = []
    for key in sorted(k for k in job.keys if "/responses/" in k):
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        if key.endswith(".ndjson"):
            lines = [orjson.loads(line) for line in data.splitlines()]
            first, last = (int(n) for n in key.rsplit("pages-", 1)[1][:-7].split("-"))
            assert [line["body"]["page"] for line in lines] == list(range(first, last + 1))
            bodies += [line["body"] for line in lines]
        else:
            body = orjson.loads(data)
            assert key.endswith(f"page-{body['page']:06d}.json")
            bodies.append(body)
    return bodies


def assert_every_page_once_in_order(bodies: list[dict[str, Any]], pages: int) -> None:
    assert [body["page"] for body in bodies] == list(range(1, pages + 1))
    assert all(body["items"] == records(body["page"]) for body in bodies)


@pytest.mark.parametrize(
    ("pagination", "path", "batch_pages"),
    [(PAGE_NUMBER, "/pages", 1), (PAGE_NUMBER, "/pages", 7), (OFFSET, "/offset", 1)],
)
def test_known_pages_are_read_ahead_at_most_read_ahead_at_once_and_land_in_order(
    api: Api,
    run_api_jobs: RunApiJobs,
    s3: Any,
    landing_bucket: str,
    pagination: dict[str, Any],
    path: str,
    batch_pages: int,
) -> None:
    api.hold = 4
    src = source(api, path, pagination=pagination, read_ahead=4, batch_pages=batch_pages)
    job = run_one(run_api_jobs, src)
    assert job.result.status == "completed", job.result.error
    assert 1 < api.max_in_flight <= 4
    assert sorted(api.requested) == list(range(1, PAGES + 1))  # each page asked for once
    assert job.result.counts.valid == -(-PAGES // batch_pages)
    assert_every_page_once_in_order(landed_pages(job, s3, landing_bucket), PAGES)


def test_never_more_than_read_ahead_in_flight(
    api: Api, run_api_jobs: RunApiJobs, s3: Any, landing_bucket: str
) -> None:
    """The server holds requests until one more than ``read_ahead`` are in: that never
    comes, so the hold runs out once; a fetch too many would have been counted."""
    api.pages, api.hold, api.hold_timeout = 12, 4, 1.0
    job = run_one(run_api_jobs, source(api, read_ahead=3))
    assert job.result.status == "completed", job.result.error
    assert api.max_in_flight <= 3
    assert_every_page_once_in_order(landed_pages(job, s3, landing_bucket), 12)


@pytest.mark.parametrize(
    ("read_ahead", "wait_for_read_ahead"),
    [(1, api_source.READ_AHEAD_WAIT), (4, 60.0)],
    ids=["read_ahead-1", "api-faster-than-read-ahead-pays"],
)
def test_pages_are_requested_one_at_a_time_without_read_ahead_or_a_slow_api(
    api: Api, run_api_jobs: RunApiJobs, s3: Any, landing_bucket: str,
    monkeypatch: pytest.MonkeyPatch, read_ahead: int, wait_for_read_ahead: float,
) -> None:  # fmt: skip
    """With ``read_ahead: 1``, or when no page waits long enough for the gate to open,
    pages go one at a time (the hold runs out once, on the first page past the ones
    always requested alone)."""
    monkeypatch.setattr(api_source, "READ_AHEAD_WAIT", wait_for_read_ahead)
    api.pages, api.hold, api.hold_timeout = 6, 2, 0.3
    job = run_one(run_api_jobs, source(api, read_ahead=read_ahead))
    assert job.result.status == "completed", job.result.error
    assert api.max_in_flight == 1
    assert api.requested == list(range(1, 7))
    assert_every_page_once_in_order(landed_pages(job, s3, landing_bucket), 6)


def test_the_gate_opens_on_the_median_wait_of_the_last_pages_and_stays_open() -> None:
    gate = LatencyGate(threshold=0.002, window=5, least=3)
    gate.observe(0.05)  # a slow first connection
    gate.observe(0.0004)
    assert not gate.open  # too few pages to judge
    for wait in (0.0005, 0.0003, 0.0004):
        gate.observe(wait)
    gate.observe(0.5)  # one slow page (a busy moment) is not a slow API
    gate.observe(0.004)
    assert not gate.open  # median of the last five: 0.0004
    gate.observe(0.003)
    assert gate.open  # median of the last five: 0.003
    for _ in range(5):
        gate.observe(0.0001)
    assert gate.open


def test_slow_pages_open_the_gate_from_the_third_on() -> None:
    gate = LatencyGate(threshold=0.002)
    for _ in range(2):
        assert gate.timed(lambda: time.sleep(0.01) or "page") == "page"
        assert not gate.open
    gate.timed(lambda: time.sleep(0.01))
    assert gate.open


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/cursor", {"pagination": {"type": "cursor", "cursor_path": "next_cursor"}}),
        ("/search", {"method": "POST", "json": {"station": "ST001"}}),
        ("/pages", {"pagination": {"type": "page_number"}}),  # no total: nothing known
    ],
    ids=["cursor", "post", "no-total"],
)
def test_unknown_requests_and_posts_are_never_read_ahead(
    api: Api,
    run_api_jobs: RunApiJobs,
    s3: Any,
    landing_bucket: str,
    path: str,
    extra: dict[str, Any],
) -> None:
    api.pages, api.hold, api.hold_timeout = 6, 2, 0.3
    api.empty_page = 7 if path == "/pages" else None  # the end without a total
    job = run_one(run_api_jobs, source(api, path, read_ahead=8, **extra))
    assert job.result.status == "completed", job.result.error
    assert api.max_in_flight == 1
    expected = list(range(1, 8 if api.empty_page else 7))
    assert api.requested == expected
    bodies = landed_pages(job, s3, landing_bucket)
    assert [body["page"] for body in bodies] == expected


def test_empty_page_stops_and_pages_read_past_it_are_not_landed(
    api: Api, run_api_jobs: RunApiJobs, s3: Any, landing_bucket: str
) -> None:
    api.empty_page, api.hold = 10, 4
    job = run_one(run_api_jobs, source(api, read_ahead=4, batch_pages=3))
    assert job.result.status == "completed", job.result.error
    bodies = landed_pages(job, s3, landing_bucket)
    assert [body["page"] for body in bodies] == list(range(1, 11))  # the empty one lands too
    assert bodies[-1]["items"] == []
    assert max(api.requested) <= 10 + 4  # some read past it, never more than read_ahead
    assert job.result.counts.valid == 4  # 1-3, 4-6, 7-9, 10


def test_a_huge_total_is_read_ahead_a_window_at_a_time(
    api: Api, run_api_jobs: RunApiJobs, s3: Any, landing_bucket: str
) -> None:
    api.pages, api.empty_page = 10**30, 6
    job = run_one(run_api_jobs, source(api, read_ahead=4))
    assert job.result.status == "completed", job.result.error
    assert [body["page"] for body in landed_pages(job, s3, landing_bucket)] == [1, 2, 3, 4, 5, 6]
    assert max(api.requested) <= 6 + 4


def test_a_transient_error_is_retried_and_every_page_lands_once(
    api: Api, run_api_jobs: RunApiJobs, s3: Any, landing_bucket: str
) -> None:
    api.fail_once, api.hold = 7, 4
    job = run_one(run_api_jobs, source(api, read_ahead=4))
    assert job.result.status == "completed", job.result.error
    assert job.result.retries == {"http_503": 1}
    assert api.hits(7) == 2
    assert all(api.hits(n) == 1 for n in range(1, PAGES + 1) if n != 7)
    assert_every_page_once_in_order(landed_pages(job, s3, landing_bucket), PAGES)


def test_a_terminal_error_fails_the_job_as_without_read_ahead(
    api: Api, run_api_jobs: RunApiJobs
) -> None:
    api.not_found = 9
    jobs = {}
    for read_ahead in (1, 4):
        api.requested.clear()
        api.max_in_flight, api.hold = 0, 0 if read_ahead == 1 else 4
        jobs[read_ahead] = run_one(run_api_jobs, source(api, read_ahead=read_ahead))
        assert api.hits(9) == 1
    assert api.max_in_flight > 1  # the second run did read ahead
    serial, ahead = jobs[1].result, jobs[4].result
    assert serial.status == ahead.status == "failed"
    assert "HTTP 404" in serial.error and "page=9" in serial.error
    assert ahead.error == serial.error
    # How many pages land before the failure depends on timing (a slow listing hands pages
    # to the workers as they come); never one past the failed page, and each one counted.
    for job in jobs.values():
        landed = [page["details"]["page"] for page in job.pages]
        assert landed == sorted(landed) and all(n < 9 for n in landed), landed
        assert job.result.counts.uploaded == len(landed)


def test_max_pages_is_never_read_past(
    api: Api, run_api_jobs: RunApiJobs, s3: Any, landing_bucket: str
) -> None:
    api.hold = 4
    job = run_one(run_api_jobs, source(api, read_ahead=4, max_pages=10))
    assert job.result.status == "completed", job.result.error
    assert sorted(api.requested) == list(range(1, 11))
    assert api.max_in_flight > 1
    assert_every_page_once_in_order(landed_pages(job, s3, landing_bucket), 10)


def test_oauth2_token_refused_to_several_threads_is_renewed_once(
    api: Api, run_api_jobs: RunApiJobs, s3: Any, landing_bucket: str
) -> None:
    """Every request in flight when a token is used up is refused it (the server holds the
    first refusal until a second one): one of them fetches a new token, the others use it."""
    api.pages, api.token_uses = 32, 8
    auth = {
        "type": "oauth2_client_credentials",
        "token_url": api.url + "/token",
        "client_id": "client",
        "client_secret": "secret-value-1234",
    }
    job = run_one(run_api_jobs, source(api, "/secure", read_ahead=4, auth=auth))
    assert job.result.status == "completed", job.result.error
    assert len(api.tokens) == 4  # 32 pages, 8 a token: no token fetched twice over
    assert_every_page_once_in_order(landed_pages(job, s3, landing_bucket), 32)


def test_a_listing_closed_early_drops_its_read_ahead(api: Api, tmp_path: Path) -> None:
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    context = SourceContext(
        "svc", "job", "run", RetryConfig(attempts=1), state.cursors_for("svc"),
        logging.getLogger("test"),
    )  # fmt: skip
    config = ApiSourceConfig.model_validate(source(api, read_ahead=4))
    try:
        with ApiSource.from_config(config, context) as api_source:
            items = api_source.list_items()
            # three pages one at a time (the gate's least), then read-ahead from page 4
            taken = [item.key for item in itertools.islice(items, 4)]
            assert read_ahead_threads()  # pages 5 to 8 are being read ahead
            items.close()  # type: ignore[attr-defined]
            assert not read_ahead_threads()
    finally:
        state.close()
    assert [key.rsplit("/", 1)[1] for key in taken] == [f"page-00000{n}.json" for n in (1, 2, 3, 4)]
    assert max(api.requested) <= 4 + 4
