"""OpenLineage events reach a local HTTP receiver (the way Marquez receives them): START then
COMPLETE or FAIL, source as input, landing prefix as output; nothing when unconfigured; a
receiver that is down never fails the caller."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import module_system
from module_system.demo.servers import MotoServer, free_port
from module_system.observability import lineage
from module_system.observability.lineage import Dataset, JobLineage, source_uri
from module_system.observability.redaction import register_secret
from tests.helpers import write_batch, write_registry


class Receiver:
    """``POST /api/v1/lineage`` as Marquez serves it, keeping every event."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        app = Starlette(routes=[Route("/api/v1/lineage", self.receive, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    async def receive(self, request: Request) -> Response:
        self.events.append(await request.json())
        return JSONResponse({}, status_code=201)

    def start(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive()
            time.sleep(0.02)
        return f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def receiver() -> Iterator[tuple[str, Receiver]]:
    server = Receiver()
    url = server.start()
    yield url, server
    server.stop()


@pytest.fixture(autouse=True)
def no_ambient_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No openlineage.yml from the working directory or home, no variables; a fresh client."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in [n for n in os.environ if n.startswith("OPENLINEAGE")]:
        monkeypatch.delenv(name)
    lineage.reset_client()
    yield
    lineage.reset_client()
    for name in [n for n in os.environ if n.startswith("OPENLINEAGE")]:
        del os.environ[name]  # the client copies OPENLINEAGE_URL into variables of its own


def job() -> JobLineage:
    return JobLineage.for_job(
        "s3_sales", "nightly_001", "s3://exports/daily/", "s3://landing/data/s3/s3_sales/"
    )


def test_start_then_complete_with_source_and_landing(
    receiver: tuple[str, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, server = receiver
    monkeypatch.setenv("OPENLINEAGE_URL", url)
    run = job()
    run.start()
    run.finish("completed", files=3, size=120)
    assert lineage.flush()
    start, complete = server.events
    assert [start["eventType"], complete["eventType"]] == ["START", "COMPLETE"]
    assert start["run"]["runId"] == complete["run"]["runId"] == run.run_id
    assert complete["job"] == {**complete["job"], "namespace": "module_system", "name": "s3_sales"}
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [("s3://exports", "daily/")]
    (output,) = complete["outputs"]
    assert (output["namespace"], output["name"]) == ("s3://landing", "data/s3/s3_sales/")
    stats = output["outputFacets"]["outputStatistics"]
    assert (stats["fileCount"], stats["size"]) == (3, 120)


def test_fail_carries_the_error_without_secrets(
    receiver: tuple[str, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, server = receiver
    monkeypatch.setenv("OPENLINEAGE_URL", url)
    register_secret("hunter2-password")
    run = job()
    run.start()
    run.finish("timed_out", "login refused for password hunter2-password")
    assert lineage.flush()
    assert [e["eventType"] for e in server.events] == ["START", "FAIL"]
    message = server.events[1]["run"]["facets"]["errorMessage"]["message"]
    assert "hunter2-password" not in message and "login refused" in message


def test_openlineage_yml_in_the_working_directory_is_used(
    receiver: tuple[str, Receiver], tmp_path: Path
) -> None:
    url, server = receiver
    (tmp_path / "openlineage.yml").write_text(f"transport:\n  type: http\n  url: {url}\n")
    job().start()
    assert lineage.flush()
    assert [e["eventType"] for e in server.events] == ["START"]


def test_nothing_is_sent_when_not_configured(receiver: tuple[str, Receiver]) -> None:
    _, server = receiver
    run = job()
    assert run.client is None
    run.start()
    run.finish("completed")
    assert lineage.flush()
    assert server.events == []


def test_disabled_wins_over_a_url(
    receiver: tuple[str, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, server = receiver
    monkeypatch.setenv("OPENLINEAGE_URL", url)
    monkeypatch.setenv("OPENLINEAGE_DISABLED", "true")
    job().start()
    assert lineage.flush()
    assert server.events == []


def test_a_receiver_that_is_down_is_logged_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    (tmp_path / "openlineage.yml").write_text(
        f"transport:\n  type: http\n  url: {nobody}\n  retry: {{total: 0}}\n"
    )
    run = job()
    with caplog.at_level(logging.WARNING, logger="module_system.observability.lineage"):
        run.start()  # returns at once: events go out from a background thread
        run.finish("failed", "boom")
        assert lineage.flush()
    sent = [r.getMessage() for r in caplog.records if r.name == lineage.__name__]
    assert any("START event of job nightly_001 not sent" in m for m in sent), sent


@pytest.mark.parametrize(
    ("kind", "source", "uri"),
    [
        ("s3", {"bucket": "exports", "prefix": "daily/"}, "s3://exports/daily/"),
        ("sftp", {"host": "files.example", "port": 2222, "path": "/out"},
         "sftp://files.example:2222/out"),
        ("api", {"url": "https://api.example/v1/obs?station=1"}, "https://api.example/v1/obs"),
        ("web", {"start_urls": ["https://news.example/"]}, "https://news.example/"),
    ],
)  # fmt: skip
def test_source_uri_from_the_source_block(kind: str, source: dict[str, Any], uri: str) -> None:
    assert source_uri(kind, type("Config", (), source)()) == uri


def test_dataset_names_follow_openlineage_naming() -> None:
    assert Dataset.from_uri("s3://b/data/x/") == Dataset("s3://b", "data/x/")
    assert Dataset.from_uri("ftp://u:pw@h:21/out") == Dataset("ftp://h:21", "/out")


def test_a_real_job_emits_start_then_complete_or_fail(
    receiver: tuple[str, Receiver], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, s3: Any,
    s3_server: MotoServer, landing: dict[str, Any], landing_bucket: str, source_bucket: str,
    state_url: str,
) -> None:  # fmt: skip
    url, server = receiver
    monkeypatch.setenv("OPENLINEAGE_URL", url)
    s3.put_object(Bucket=source_bucket, Key="in/a.txt", Body=b"hello")
    source = {"bucket": source_bucket, "prefix": "in/", "endpoint_url": s3_server.url}
    missing = {**source, "bucket": "no-such-bucket-here"}
    services = {"good": {"type": "s3", "source": source}, "bad": {"type": "s3", "source": missing}}
    registry = write_registry(tmp_path / "r.yaml", landing, services)
    batch = write_batch(tmp_path / "b.json", [("j_good", "good"), ("j_bad", "bad")])
    result = module_system.run(batch, registry, state_url=state_url)
    assert lineage.flush()
    by_job = {e["job"]["name"]: [] for e in server.events}
    for event in server.events:
        by_job[event["job"]["name"]].append(event)
    assert [e["eventType"] for e in by_job["good"]] == ["START", "COMPLETE"]
    assert [e["eventType"] for e in by_job["bad"]] == ["START", "FAIL"]
    complete = by_job["good"][1]
    assert complete["inputs"][0] == {**complete["inputs"][0], "namespace": f"s3://{source_bucket}",
                                     "name": "in/"}  # fmt: skip
    assert complete["outputs"][0]["namespace"] == f"s3://{landing_bucket}"
    assert complete["outputs"][0]["name"] == "data/s3/good/"
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["fileCount"] == 1
    assert "no-such-bucket-here" in by_job["bad"][1]["run"]["facets"]["errorMessage"]["message"]
    assert {j.status for j in result.jobs} == {"completed", "failed"}
