"""Every pagination style end to end, and the ways pagination must stop."""

from __future__ import annotations

from typing import Any

from tests.api_server import ApiServer, JobRun
from tests.helpers import read_json


def records_landed(job: JobRun) -> int:
    return sum(page["details"]["records"] for page in job.pages)


def test_page_number_stops_on_empty_page(run: Any, api: ApiServer) -> None:
    job = run(
        {"url": "/pages", "pagination": {"type": "page_number"}, "records_path": "data.items"}
    )
    assert job.result.status == "completed", job.result.error
    assert [q["page"] for q in api.paths("/pages")] == ["1", "2", "3", "4"]
    assert job.result.counts.valid == 4  # the empty page lands too: it is the API's answer
    assert records_landed(job) == 25
    assert all(k.endswith(".json") for k in job.keys)


def test_page_number_stops_at_total_path(run: Any, api: ApiServer) -> None:
    pagination = {"type": "page_number", "total_path": "total_pages"}
    job = run({"url": "/pages", "pagination": pagination, "records_path": "data.items"})
    # Pages 2 and 3 are read ahead together (read_ahead): they may arrive in either order.
    assert sorted(q["page"] for q in api.paths("/pages")) == ["1", "2", "3"]
    assert records_landed(job) == 25


def test_page_number_that_repeats_its_last_page_is_detected(run: Any, api: ApiServer) -> None:
    job = run({"url": "/clamped", "pagination": {"type": "page_number"}, "records_path": "items"})
    assert job.result.status == "completed"
    assert len(api.paths("/clamped")) == 4  # page 4 repeats page 3: not landed, the end
    assert job.result.counts.valid == 3
    assert records_landed(job) == 25


def test_offset(run: Any, api: ApiServer) -> None:
    pagination = {"type": "offset", "limit": 10, "total_path": "total"}
    job = run({"url": "/offset", "pagination": pagination, "records_path": "items"})
    sent = [(q["offset"], q["limit"]) for q in api.paths("/offset")]
    assert sorted(sent) == [("0", "10"), ("10", "10"), ("20", "10")]  # read ahead: any order
    assert records_landed(job) == 25


def test_cursor(run: Any, api: ApiServer) -> None:
    pagination = {"type": "cursor", "cursor_path": "meta.next_cursor", "param": "cursor"}
    job = run({"url": "/cursor", "pagination": pagination, "records_path": "items"})
    assert [q.get("cursor") for q in api.paths("/cursor")] == [None, "c10", "c20"]
    assert records_landed(job) == 25


def test_next_url_relative_links(run: Any, api: ApiServer) -> None:
    source = {"url": "/next", "params": {"station": "ST001"}, "records_path": "items"}
    job = run({**source, "pagination": {"type": "next_url", "path": "next"}})
    assert [q.get("page") for q in api.paths("/next")] == [None, "2", "3"]
    assert all(q["station"] == "ST001" for q in api.paths("/next"))
    assert records_landed(job) == 25


def test_link_header(run: Any, api: ApiServer) -> None:
    job = run({"url": "/link", "pagination": {"type": "link_header"}})
    assert [q.get("page") for q in api.paths("/link")] == [None, "2", "3"]
    assert records_landed(job) == 25


def test_cursor_loop_fails_with_a_clear_error(run: Any, api: ApiServer) -> None:
    job = run({"url": "/cursor-loop", "pagination": {"type": "cursor"}, "records_path": "items"})
    assert job.result.status == "failed"
    assert "pagination loop" in job.result.error
    assert "always-the-same" in job.result.error
    assert len(api.paths("/cursor-loop")) == 2  # the repeat is noticed at once


def test_max_pages(run: Any, api: ApiServer) -> None:
    source = {"url": "/pages", "pagination": {"type": "page_number"}, "records_path": "data.items"}
    job = run({**source, "max_pages": 2})
    assert job.result.status == "completed"
    assert len(api.paths("/pages")) == 2
    assert records_landed(job) == 20


def test_no_pagination_and_manifest_details(run: Any, api: ApiServer) -> None:
    job = run({"url": "/pages", "params": {"per_page": 5}, "records_path": "data.items"})
    assert len(api.paths("/pages")) == 1
    [page] = job.pages
    assert page["details"] == {
        "page": 1,
        "request_url": f"{api.url}/pages?per_page=5",
        "http_status": 200,
        "records": 5,
    }
    assert page["verdict"] == "valid"
    assert page["key"].endswith(f"/job_weather/{job.manifest['run_id']}/page-000001.json")
    assert page["landing_key"].startswith("data/api/weather/responses/")


def test_post_with_json_body(run: Any, s3: Any, landing_bucket: str) -> None:
    source = {"url": "/echo", "method": "POST", "json": {"station": "ST001", "limit": 3}}
    job = run({**source, "records_path": "items"})
    assert job.result.status == "completed", job.result.error
    [page] = job.pages
    body = read_json(s3, landing_bucket, page["landing_key"])
    assert body == {"method": "POST", "items": [{"station": "ST001", "limit": 3}]}
