"""Web → S3 end to end: a generated site on loopback, crawled, validated and landed in a
real S3 API server (moto), with the manifest, quarantine and a second, incremental run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from module_system.pipeline import RunOptions
from module_system.results import JobResult, JobStatus
from tests.helpers import RunJobs, list_keys, read_json
from tests.web_site import Site, article

ROOT = "data/web/news/"
RECORD_SCHEMA = {
    "type": "object",
    "required": ["title", "published"],
    "properties": {"title": {"type": "string"}, "published": {"type": "string", "format": "date"}},
}


@pytest.fixture
def site() -> Iterator[Site]:
    with Site() as running:
        yield running


def web_service(site: Site, **source: Any) -> dict[str, Any]:
    return {
        "type": "web",
        "source": {"start_urls": [site.url + "/"], "max_page_bytes": 4096, **source},
        "validation": {
            "html": {"required_selectors": ["title", "article h1"], "min_text_length": 100},
            "json_schema": RECORD_SCHEMA,
        },
        "extract": {
            "records": "article",
            "fields": {"title": "h1::text", "published": "time::attr(datetime)"},
        },
        "retry": {"attempts": 3, "backoff": 0.01, "max_backoff": 0.05},
    }


def crawl(
    run_jobs: RunJobs, service: dict[str, Any], job_id: str = "job1", full_refresh: bool = False
) -> JobResult:
    options = RunOptions(full_refresh=full_refresh)
    return run_jobs({"news": service}, [(job_id, "news")], options).jobs[0]


def manifest_files(s3: Any, bucket: str, job_id: str) -> dict[str, dict[str, Any]]:
    manifest = read_json(s3, bucket, f"{ROOT}_manifests/{job_id}.json")
    return {
        entry["source_uri"]: entry for entry in manifest["files"] if "records" not in entry["key"]
    }


def test_crawl_lands_pages_quarantines_broken_ones_and_lists_the_rest(
    run_jobs: RunJobs, s3: Any, site: Site, landing: dict[str, Any]
) -> None:
    job = crawl(run_jobs, web_service(site))
    assert job.status is JobStatus.COMPLETED, job.error
    bucket, host = landing["bucket"], f"127.0.0.1_{site.port}"
    keys = list_keys(s3, bucket)
    scraped = {k.removeprefix(f"{ROOT}scraped/{host}/") for k in keys if "/scraped/" in k}
    assert {
        "page2.html", "news/index.html", "news/a1.html", "news/a2.html", "news/a3.html",
        "latin1.html", "news/moved-here.html", "flaky.html", "throttled.html", "based/page.html",
        "news/base-only.html", "via-noindex.html", "nofollow.html",
    } <= scraped  # fmt: skip
    assert "news/a1.html.records.jsonl" in scraped
    quarantined = {k.removeprefix(f"{ROOT}quarantine/{host}/") for k in keys if "/quarantine/" in k}
    assert {"index.html", "news/broken.html", "news/broken.html.error.json"} <= quarantined
    report = read_json(s3, bucket, f"{ROOT}quarantine/{host}/news/broken.html.error.json")
    assert "required element missing: article h1" in report["errors"][0]["message"]

    paths = site.paths()
    for never in ("/private/secret.html", "/hidden.html", "/external.html"):
        assert never not in paths  # robots.txt, nofollow, outside allowed_domains
    assert paths.count("/news/a1.html") == 1  # fragment dropped, cycle and canonical deduped
    assert paths.count("/flaky.html") == 2 and paths.count("/throttled.html") == 2
    assert not any(p.startswith(("/news/a1.html#", "mailto", "javascript", "data")) for p in paths)

    files = manifest_files(s3, bucket, "job1")
    u = site.url
    moved = files[u + "/moved"]
    assert moved["outcome"] == "landed"
    assert moved["details"]["final_url"] == u + "/news/moved-here.html"
    assert moved["details"]["status"] == 200 and moved["details"]["content_type"] == "text/html"
    assert files[u + "/latin1.html"]["details"]["encoding"] == "cp1252"
    assert u + "/image.png" not in files and "/image.png" not in paths  # skip_extensions
    assert files[u + "/report.txt"]["outcome"] == "ignored"
    assert "not HTML (text/plain)" in files[u + "/report.txt"]["details"]["skip_reason"]
    assert files[u + "/missing.html"]["outcome"] == "vanished"
    assert "HTTP 404" in files[u + "/missing.html"]["error"]
    assert "max_page_bytes" in files[u + "/big.html"]["details"]["skip_reason"]
    assert "noindex" in files[u + "/noindex.html"]["details"]["skip_reason"]
    assert "duplicate of" in files[u + "/dup.html?utm=1"]["details"]["skip_reason"]
    assert u + "/index.html?print=1" in files  # not excluded in this service

    records_key = f"{ROOT}scraped/{host}/news/a1.html.records.jsonl"
    body = s3.get_object(Bucket=bucket, Key=records_key)["Body"].read()
    assert orjson.loads(body) == {"title": "Article one", "published": "2026-11-28"}
    latin = s3.get_object(Bucket=bucket, Key=f"{ROOT}scraped/{host}/latin1.html")["Body"].read()
    assert "Café".encode("latin-1") in latin  # landed as served, byte for byte


def test_second_run_sends_conditional_requests_and_lands_only_changes(
    run_jobs: RunJobs, s3: Any, site: Site, landing: dict[str, Any]
) -> None:
    service = web_service(site, exclude=[r"\?print=1"])
    first = crawl(run_jobs, service)
    assert first.status is JobStatus.COMPLETED, first.error
    site.pages["/news/a3.html"].body = article("Article three, corrected")
    site.requests.clear()
    second = crawl(run_jobs, service, job_id="job2")
    assert second.status is JobStatus.COMPLETED, second.error
    assert "/index.html?print=1" not in site.paths()
    conditional = [r for r in site.requests if "if-none-match" in r.headers]
    assert len(conditional) >= 10
    assert "/hidden.html" not in site.paths()
    files = manifest_files(s3, landing["bucket"], "job2")
    a3 = files[site.url + "/news/a3.html"]
    assert a3["outcome"] == "landed"
    assert files[site.url + "/news/a1.html"]["outcome"] == "skipped"
    assert files[site.url + "/news/a1.html"]["details"]["status"] == 304
    # pages behind an unchanged page are still reached through its remembered links
    assert files[site.url + "/news/base-only.html"]["outcome"] == "skipped"
    assert second.counts.valid == 2  # the changed page and its records
    third = crawl(run_jobs, service, job_id="job3", full_refresh=True)
    assert third.counts.valid == first.counts.valid
