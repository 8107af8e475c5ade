"""A small REST API for the API source's tests: one endpoint per behaviour, served by
uvicorn in a thread on a free loopback port (real HTTP, httpx is never patched).

Every request is recorded in ``server.requests`` (path, query, headers) so tests can see
exactly what the client sent.
"""

from __future__ import annotations

import base64
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from module_system.pipeline import RunOptions
from module_system.results import JobResult
from module_system.sources.http import ratelimit
from tests.helpers import RunJobs, list_keys, read_json

BEARER = "bearer-tok-7f3a9c"
API_KEY = "key-5d1e8b"
BASIC = ("weather", "pw-2c4f6a")
CLIENT = ("client-42", "client-secret-9e8d")
PER_PAGE = 10


def observations(count: int = 25) -> list[dict[str, Any]]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        {
            "id": n,
            "station": "ST001",
            "temperature": round(-5 + n * 0.7, 1),
            "updated_at": (start + timedelta(hours=n)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        for n in range(1, count + 1)
    ]


@dataclass
class ApiState:
    records: list[dict[str, Any]] = field(default_factory=observations)
    requests: list[tuple[str, dict[str, str], dict[str, str]]] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)
    token_lifetime: int = 3600
    token_uses: int = 1000  # a token is refused (401) after this many uses
    tokens: dict[str, int] = field(default_factory=dict)
    retry_after: str = "0.2"
    fail_page: int | None = None  # /since answers 500 for this page
    lock: threading.Lock = field(default_factory=threading.Lock)


def _int(request: Request, name: str, default: int) -> int:
    return int(request.query_params.get(name, default))


def _since(state: ApiState, request: Request) -> list[dict[str, Any]]:
    since = request.query_params.get("since")
    return [r for r in state.records if since is None or r["updated_at"] > since]


def _page(records: list[Any], page: int, size: int = PER_PAGE) -> list[Any]:
    return records[(page - 1) * size : page * size]


def build_app(state: ApiState) -> Any:
    """The ASGI app; every request is recorded in ``state.requests`` first."""

    def pages(request: Request) -> Response:
        page, size = _int(request, "page", 1), _int(request, "per_page", PER_PAGE)
        total = -(-len(state.records) // size)
        items = _page(state.records, page, size)
        return JSONResponse({"data": {"items": items}, "total_pages": total, "page": page})

    def clamped(request: Request) -> Response:  # serves its last page for any page beyond
        last = -(-len(state.records) // PER_PAGE)
        page = min(_int(request, "page", 1), last)
        return JSONResponse({"items": _page(state.records, page), "page": page})

    def offset(request: Request) -> Response:
        start, limit = _int(request, "offset", 0), _int(request, "limit", PER_PAGE)
        items = state.records[start : start + limit]
        return JSONResponse({"items": items, "total": len(state.records)})

    def cursor(request: Request) -> Response:
        position = int(request.query_params.get("cursor", "c0")[1:])
        items = state.records[position : position + PER_PAGE]
        following = position + PER_PAGE
        nxt = f"c{following}" if following < len(state.records) else None
        return JSONResponse({"items": items, "meta": {"next_cursor": nxt}})

    def cursor_loop(request: Request) -> Response:
        return JSONResponse({"items": state.records[:2], "next_cursor": "always-the-same"})

    def next_url(request: Request) -> Response:
        page = _int(request, "page", 1)
        items = _page(state.records, page)
        nxt = (
            f"/next?page={page + 1}&station=ST001" if page * PER_PAGE < len(state.records) else None
        )
        return JSONResponse({"items": items, "next": nxt})

    def link_header(request: Request) -> Response:
        page = _int(request, "page", 1)
        response = JSONResponse(_page(state.records, page))
        if page * PER_PAGE < len(state.records):
            base = str(request.url).split("?")[0]
            response.headers["Link"] = (
                f'<{base}?page={page + 1}>; rel="next", <{base}>; rel="first"'
            )
        return response

    def since(request: Request) -> Response:
        page = _int(request, "page", 1)
        if state.fail_page == page:
            return PlainTextResponse("database unavailable", status_code=500)
        return JSONResponse({"items": _page(_since(state, request), page)})

    def flaky(request: Request) -> Response:
        key = f"flaky:{request.url.query}"
        with state.lock:
            state.hits[key] += 1
            count = state.hits[key]
        if count <= _int(request, "fail", 2):
            return PlainTextResponse("try again", status_code=503)
        return JSONResponse({"items": state.records[:3]})

    def throttled(request: Request) -> Response:
        key = f"throttled:{request.url.query}"
        with state.lock:
            state.hits[key] += 1
            count = state.hits[key]
        if count == 1:
            retry = state.retry_after
            if retry == "date":
                retry = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
            return PlainTextResponse("slow down", 429, headers={"Retry-After": retry})
        return JSONResponse({"items": state.records[:3]})

    def malformed(request: Request) -> Response:
        if _int(request, "page", 1) == 2:
            return PlainTextResponse('{"items": [{"id": 1}, ', media_type="application/json")
        return JSONResponse({"items": _page(state.records, _int(request, "page", 1))})

    def missing(request: Request) -> Response:
        return JSONResponse({"error": "no data for this station"})

    def forbidden(request: Request) -> Response:
        return PlainTextResponse("station ST001 is not in your plan", status_code=403)

    def secure(request: Request) -> Response:
        if not _authorised(state, request):
            return PlainTextResponse("unauthorised", status_code=401)
        return pages(request)

    async def echo(request: Request) -> Response:
        return JSONResponse({"method": request.method, "items": [await request.json()]})

    async def token(request: Request) -> Response:
        return await _issue_token(state, request)

    def handoff(request: Request) -> Response:  # next_url / Link to the URL in ``to``
        to = request.query_params.get("to")
        response = JSONResponse({"items": state.records[:2], "next": to})
        if to:
            response.headers["Link"] = f'<{to}>; rel="next"'
        if request.query_params.get("cookie"):
            response.set_cookie("session", request.query_params["cookie"], domain="api.test")
        return response

    def redirect(request: Request) -> Response:
        status = _int(request, "status", 302)
        return Response(status_code=status, headers={"Location": request.query_params["to"]})

    def big(request: Request) -> Response:  # ``bytes`` of JSON, declared or chunked
        body = b'{"items": [], "pad": "' + b"x" * _int(request, "bytes", 0) + b'"}'
        if request.query_params.get("chunked"):
            return StreamingResponse(iter([body]), media_type="application/json")
        return Response(body, media_type="application/json")

    routes = [
        Route("/pages", pages), Route("/clamped", clamped), Route("/offset", offset),
        Route("/cursor", cursor), Route("/cursor-loop", cursor_loop), Route("/next", next_url),
        Route("/link", link_header), Route("/since", since), Route("/flaky", flaky),
        Route("/throttled", throttled), Route("/malformed", malformed),
        Route("/missing", missing), Route("/forbidden", forbidden),
        Route("/secure/{method}", secure, methods=["GET", "POST"]),
        Route("/oauth/token", token, methods=["POST"]),
        Route("/echo", echo, methods=["POST"]),
        Route("/handoff", handoff), Route("/redirect", redirect, methods=["GET", "POST"]),
        Route("/big", big),
    ]  # fmt: skip
    app = Starlette(routes=routes)

    async def recorded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            query = dict(parse_qsl(scope["query_string"].decode()))
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            with state.lock:
                state.requests.append((scope["path"], query, headers))
        await app(scope, receive, send)

    return recorded


def _authorised(state: ApiState, request: Request) -> bool:
    method, headers = request.path_params["method"], request.headers
    if method == "bearer":
        return headers.get("authorization") == f"Bearer {BEARER}"
    if method == "key-header":
        return headers.get("x-api-key") == API_KEY
    if method == "key-query":
        return request.query_params.get("api_key") == API_KEY
    if method == "basic":
        expected = base64.b64encode(":".join(BASIC).encode()).decode()
        return headers.get("authorization") == f"Basic {expected}"
    if method == "oauth":
        token = headers.get("authorization", "").removeprefix("Bearer ")
        with state.lock:
            if state.tokens.get(token, 0) <= 0:
                return False
            state.tokens[token] -= 1
        return True
    return False


async def _issue_token(state: ApiState, request: Request) -> Response:
    form = dict(parse_qsl((await request.body()).decode()))
    client = (form.get("client_id"), form.get("client_secret"))
    basic = request.headers.get("authorization", "")
    if basic.startswith("Basic "):
        client = tuple(base64.b64decode(basic[6:]).decode().split(":", 1))  # type: ignore[assignment]
    if form.get("grant_type") != "client_credentials" or client != CLIENT:
        return JSONResponse({"error": "invalid_client"}, status_code=401)
    with state.lock:
        token = f"access-{len(state.tokens) + 1}-{time.monotonic_ns()}"
        state.tokens[token] = state.token_uses
    return JSONResponse(
        {"access_token": token, "token_type": "Bearer", "expires_in": state.token_lifetime}
    )


class ApiServer:
    """uvicorn serving :func:`build_app` in a daemon thread on a free port."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.state = ApiState()
        self.host = host
        config = uvicorn.Config(build_app(self.state), host=host, port=0, log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self.url = ""

    def start(self) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test API server did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.port = port
        self.url = f"http://{self.host}:{port}"
        return self

    def reset(self) -> None:
        self.state.__init__()  # type: ignore[misc]

    def paths(self, path: str) -> list[dict[str, str]]:
        """Query parameters of every request made to ``path``."""
        return [query for p, query, _ in self.state.requests if p == path]

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


# --- running jobs against it -----------------------------------------------------------

FAST_RETRY = {"attempts": 3, "backoff": 0.01, "max_backoff": 0.05}


@dataclass
class JobRun:
    """What one batch left behind: the job's result, its manifest and the landed keys."""

    result: Any
    manifest: dict[str, Any]
    keys: list[str]

    @property
    def pages(self) -> list[dict[str, Any]]:
        return [f for f in self.manifest["files"] if f["outcome"] != "failed"]


RunApiJobs = Callable[..., list[JobRun]]


def service(source: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A registry service block of type ``api`` with fast retries."""
    return {"type": "api", "source": source, "retry": FAST_RETRY, **extra}


def job_run(s3: Any, bucket: str, job: JobResult) -> JobRun:
    """The job's result with its manifest and the keys it landed, read from ``bucket``."""
    manifest = read_json(s3, bucket, job.manifest_key) if job.manifest_key else {}
    return JobRun(job, manifest, list_keys(s3, bucket, f"data/api/{job.service_id}/"))


# --- fixtures, registered for every test module by tests/conftest.py --------------------


@pytest.fixture(name="api", scope="module")
def api_fixture() -> Iterator[ApiServer]:
    server = ApiServer().start()
    yield server
    server.stop()


@pytest.fixture(name="other_api", scope="module")
def other_api_fixture() -> Iterator[ApiServer]:
    """The same API on 127.0.0.2: another origin, for egress and credential tests."""
    server = ApiServer(host="127.0.0.2").start()
    yield server
    server.stop()


@pytest.fixture
def run_api_jobs(run_jobs: RunJobs, s3: Any, landing: dict[str, Any]) -> RunApiJobs:
    """``run_api_jobs(services, landing=None, **options)``: conftest's ``run_jobs`` (one job a
    service, ``job_<service>``, with ``RunOptions(**options)``), each job collected as a
    :class:`JobRun`."""
    test_landing = landing

    def run(
        services: dict[str, Any], landing: dict[str, Any] | None = None, **options: Any
    ) -> list[JobRun]:
        result = run_jobs(services, options=RunOptions(**options), landing=landing)
        return [job_run(s3, (landing or test_landing)["bucket"], job) for job in result.jobs]

    return run


@pytest.fixture(name="run")
def run_fixture(
    api: ApiServer, run_api_jobs: RunApiJobs, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., JobRun]:
    """``run(source, options, **service_extra)`` runs one job; returns its :class:`JobRun`."""
    api.reset()
    monkeypatch.setattr(ratelimit, "_buckets", {})

    def go(source: dict[str, Any], options: dict[str, Any] | None = None, **extra: Any) -> JobRun:
        source = {**source, "url": api.url + source["url"]}
        return run_api_jobs({"weather": service(source, **extra)}, **(options or {}))[0]

    return go
