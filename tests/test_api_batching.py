"""``batch_pages``: up to N pages in one NDJSON object, each page still validated on its
own; an invalid page lands alone in quarantine while the rest land together."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from module_system.sources.api import ApiSource, ApiSourceConfig
from module_system.sources.http import batching
from module_system.state import StateStore
from module_system.validation.json_schema import JsonSchemaOptions, JsonSchemaValidator
from tests import api_server as harness
from tests.api_server import ApiServer, JobRun, RunApiJobs, observations
from tests.faulty_proxy import faulty_proxy
from tests.helpers import read_json

RECORD = {
    "type": "object",
    "required": ["id", "temperature", "updated_at"],
    "properties": {
        "id": {"type": "integer"},
        "temperature": {"type": "number"},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}
PAGES = {"type": "page_number", "total_path": "total_pages"}
SOURCE = {"url": "/pages", "pagination": PAGES, "records_path": "data.items"}
VALIDATION = {"json_schema": RECORD}
SINCE = {
    "url": "/since",
    "pagination": {"type": "page_number"},
    "records_path": "items",
    "incremental": {"cursor_field": "updated_at", "param": "since", "initial": "2026-01-01"},
}
CURSOR = "incremental:updated_at"


def lines_of(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert body.endswith(b"\n")
    return [orjson.loads(line) for line in body.splitlines()]


def pages_in(entry: dict[str, Any]) -> list[int]:
    return [part["page"] for part in entry["details"]["parts"]]


def by_outcome(job: JobRun, outcome: str) -> list[dict[str, Any]]:
    return sorted((f for f in job.pages if f["outcome"] == outcome), key=lambda f: f["key"])


def test_pages_land_in_batches_of_n(run: Any, api: ApiServer, s3: Any, landing_bucket: str) -> None:
    api.state.records = observations(95)  # 10 pages of 10 (the last of 5)
    job = run({**SOURCE, "batch_pages": 4}, validation=VALIDATION)

    assert job.result.status == "completed", job.result.error
    assert job.result.counts.valid == 3 and job.result.counts.listed == 3
    landed = by_outcome(job, "landed")
    assert [pages_in(e) for e in landed] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    assert [e["key"].rsplit("/", 1)[1] for e in landed] == [
        "pages-000001-000004.ndjson", "pages-000005-000008.ndjson", "pages-000009-000010.ndjson",
    ]  # fmt: skip
    assert all("/responses/" in e["landing_key"] for e in landed)

    lines = [line for e in landed for line in lines_of(s3, landing_bucket, e["landing_key"])]
    assert [line["body"]["page"] for line in lines] == list(range(1, 11))
    assert [r["id"] for line in lines for r in line["body"]["data"]["items"]] == list(range(1, 96))
    first = lines[0]
    assert set(first) == {"url", "status", "fetched_at", "body"}
    assert first["status"] == 200 and first["url"].endswith("/pages?page=1")
    assert first["body"]["total_pages"] == 10


def test_manifest_lists_each_page_of_a_batch(run: Any, api: ApiServer) -> None:
    api.state.records = observations(25)
    job = run({**SOURCE, "batch_pages": 10}, validation=VALIDATION)
    (entry,) = job.pages
    assert entry["outcome"] == "landed" and entry["verdict"] == "valid"
    parts = entry["details"]["parts"]
    assert [(p["page"], p["http_status"], p["records"]) for p in parts] == [
        (1, 200, 10), (2, 200, 10), (3, 200, 5),
    ]  # fmt: skip
    assert [p["request_url"].rsplit("/", 1)[1] for p in parts] == [
        "pages?page=1", "pages?page=2", "pages?page=3",
    ]  # fmt: skip
    assert all(p["fetched_at"].endswith("+00:00") for p in parts)
    assert entry["source_uri"] == parts[0]["request_url"]


def test_batch_pages_1_keeps_one_json_file_a_page(run: Any, api: ApiServer) -> None:
    job = run(SOURCE, validation=VALIDATION)
    assert [p["key"].rsplit("/", 1)[1] for p in job.pages] == [
        "page-000001.json", "page-000002.json", "page-000003.json",
    ]  # fmt: skip


def test_batch_bytes_ends_a_batch_before_it_passes_the_cap(
    run: Any, api: ApiServer, s3: Any, landing_bucket: str
) -> None:
    api.state.records = observations(95)
    cap = 2600  # a line of 10 records is about 1,100 bytes: two fit, three do not
    job = run({**SOURCE, "batch_pages": 100, "batch_bytes": cap}, validation=VALIDATION)
    assert job.result.status == "completed", job.result.error
    landed = by_outcome(job, "landed")
    sizes = [e["size"] for e in landed]
    assert all(size <= cap for size in sizes)
    assert [pages_in(e) for e in landed] == [[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]]
    bodies = [s3.get_object(Bucket=landing_bucket, Key=e["landing_key"])["Body"].read()
              for e in landed]  # fmt: skip
    first_lines = [len(body.splitlines(keepends=True)[0]) for body in bodies]
    assert all(size + nxt > cap for size, nxt in zip(sizes, first_lines[1:], strict=False))


def test_a_page_larger_than_batch_bytes_is_a_batch_of_its_own(run: Any, api: ApiServer) -> None:
    api.state.records = observations(25)
    job = run({**SOURCE, "batch_pages": 100, "batch_bytes": 1024}, validation=VALIDATION)
    assert job.result.status == "completed", job.result.error
    assert [pages_in(e) for e in by_outcome(job, "landed")] == [[1], [2], [3]]


def test_a_spooled_batch_lands_the_same(
    run: Any, api: ApiServer, s3: Any, landing_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.state.records = observations(25)
    small = run({**SOURCE, "batch_pages": 10}, validation=VALIDATION)
    monkeypatch.setattr(batching, "SPOOL_BYTES", 1500)  # pages 2 and 3 wait on disk
    spooled = run({**SOURCE, "batch_pages": 10}, validation=VALIDATION)
    assert spooled.result.status == "completed", spooled.result.error
    (one,), (other,) = small.pages, spooled.pages
    read = [lines_of(s3, landing_bucket, e["landing_key"]) for e in (one, other)]
    assert [line["body"] for line in read[0]] == [line["body"] for line in read[1]]
    assert other["size"] == one["size"]


def test_an_invalid_page_is_quarantined_alone_with_its_reasons(
    run: Any, api: ApiServer, s3: Any, landing_bucket: str
) -> None:
    records = observations(25)
    records[13]["temperature"] = "warm"  # page 2, its 4th record
    api.state.records = records
    job = run({**SOURCE, "batch_pages": 10}, validation=VALIDATION)

    assert job.result.status == "completed", job.result.error
    counts = job.result.counts
    assert (counts.listed, counts.valid, counts.invalid) == (2, 1, 1)
    (batch,) = by_outcome(job, "landed")
    assert pages_in(batch) == [1, 3]
    lines = lines_of(s3, landing_bucket, batch["landing_key"])
    assert [line["body"]["page"] for line in lines] == [1, 3]

    (bad,) = by_outcome(job, "quarantined")
    assert bad["key"].endswith("/page-000002.ndjson")
    assert "/quarantine/" in bad["landing_key"]
    assert bad["details"]["page"] == 2 and bad["details"]["records"] == 10
    location = "line 1: $.body.data.items[3].temperature"
    assert [m["location"] for m in bad["details"]["messages"]] == [location]
    report = read_json(s3, landing_bucket, bad["landing_key"] + ".error.json")
    assert report["valid"] is False and report["errors"][0]["location"] == location
    assert "is not of type" in report["errors"][0]["message"]
    (alone,) = lines_of(s3, landing_bucket, bad["landing_key"])
    assert alone["body"]["data"]["items"][3]["temperature"] == "warm"


def test_a_batch_of_only_invalid_pages_lands_each_alone(
    run: Any, api: ApiServer, s3: Any, landing_bucket: str
) -> None:
    records = observations(25)
    for record in records[::10]:  # the first record of every page
        record["id"] = "one"
    api.state.records = records
    job = run({**SOURCE, "batch_pages": 10}, validation=VALIDATION)
    assert job.result.status == "completed", job.result.error
    assert job.result.counts.invalid == 3 and job.result.counts.valid == 0
    quarantined = by_outcome(job, "quarantined")
    assert [q["details"]["page"] for q in quarantined] == [1, 2, 3]
    assert all(q["key"].endswith(f"page-00000{q['details']['page']}.ndjson") for q in quarantined)
    assert not [k for k in job.keys if "pages-" in k]


def test_a_page_that_is_not_json_lands_alone_and_ends_pagination(
    run: Any, api: ApiServer, s3: Any, landing_bucket: str
) -> None:
    source = {"url": "/malformed", "pagination": {"type": "page_number"}, "records_path": "items"}
    job = run({**source, "batch_pages": 10}, validation=VALIDATION)
    (batch,) = by_outcome(job, "landed")
    assert pages_in(batch) == [1]
    (bad,) = by_outcome(job, "quarantined")
    assert bad["key"].endswith("/page-000002.json")  # as received: it cannot be a line
    report = read_json(s3, landing_bucket, bad["landing_key"] + ".error.json")
    assert "not parseable JSON" in report["errors"][0]["message"]
    assert len(api.paths("/malformed")) == 2


def test_a_page_without_records_is_quarantined_alone(
    run: Any, api: ApiServer, s3: Any, landing_bucket: str, state_url: str
) -> None:
    source = {"url": "/missing", "records_path": "items", "batch_pages": 10}
    job = run({**source, "incremental": SINCE["incremental"]}, validation=VALIDATION)
    (bad,) = job.pages  # a batch of one invalid page: it lands alone, no batch object
    assert bad["outcome"] == "quarantined" and bad["key"].endswith("/page-000001.ndjson")
    report = read_json(s3, landing_bucket, bad["landing_key"] + ".error.json")
    assert "no records: the response has no 'items'" in report["errors"][0]["message"]
    assert StateStore(state_url).cursors_for("weather").get(CURSOR) is None


def test_max_pages_still_caps_a_batched_run(run: Any, api: ApiServer) -> None:
    api.state.records = observations(95)
    job = run({**SOURCE, "batch_pages": 2, "max_pages": 3}, validation=VALIDATION)
    assert [pages_in(e) for e in by_outcome(job, "landed")] == [[1, 2], [3]]
    assert len(api.paths("/pages")) == 3


def test_incremental_runs_in_batches(run: Any, api: ApiServer, state_url: str) -> None:
    first = run({**SINCE, "batch_pages": 10}, validation=VALIDATION)
    assert first.result.status == "completed", first.result.error
    cursors = StateStore(state_url).cursors_for("weather")
    assert cursors.get(CURSOR) == "2026-01-02T01:00:00Z"  # record 25
    assert pages_in(first.pages[0]) == [1, 2, 3, 4]  # the empty page 4 ends pagination

    api.state.records = observations(30)
    second = run({**SINCE, "batch_pages": 10}, validation=VALIDATION)
    assert second.result.status == "completed", second.result.error
    assert [p["records"] for p in second.pages[0]["details"]["parts"]] == [5, 0]
    since = [q.get("since") for q in api.paths("/since") if q.get("page") == "1"]
    assert since == ["2026-01-01", "2026-01-02T01:00:00Z"]
    assert cursors.get(CURSOR) == "2026-01-02T06:00:00Z"


def test_the_cursor_stays_when_a_batch_fails_to_land(
    api: ApiServer, run_api_jobs: RunApiJobs, s3_server: Any, landing: dict[str, Any],
    state_url: str,
) -> None:  # fmt: skip
    api.reset()
    source = {**SINCE, "url": api.url + "/since", "batch_pages": 2}
    services = {"weather": harness.service(source, validation=VALIDATION)}
    cursors = StateStore(state_url).cursors_for("weather")

    def refuse_the_second_batch(method: str, path: str, n: int) -> str | None:
        return "503" if method == "PUT" and "pages-000003-000004.ndjson" in path else None

    with faulty_proxy(s3_server.url, refuse_the_second_batch) as proxy:
        proxied = {**landing, "endpoint_url": proxy.url, "retry": harness.FAST_RETRY}
        (failed,) = run_api_jobs(services, landing=proxied)
    assert proxy.faults > 0
    assert failed.result.status == "failed"
    assert (failed.result.counts.valid, failed.result.counts.failed) == (1, 1)
    assert cursors.get(CURSOR) is None  # pages 1-2 landed, yet the run did not finish

    (again,) = run_api_jobs(services)
    assert again.result.status == "completed", again.result.error
    assert sum(p["records"] for e in again.pages for p in e["details"]["parts"]) == 25
    assert cursors.get(CURSOR) == "2026-01-02T01:00:00Z"


# --- how a batch is validated --------------------------------------------------------------


def test_batches_tell_the_validator_where_each_line_holds_its_response() -> None:
    batched = ApiSourceConfig(url="https://api.test/x", records_path="data", batch_pages=5)
    options = ApiSource.adapt_validation(batched, {})["json_schema"]
    assert (options.records_path, options.line_document) == ("data", "body")
    single = ApiSourceConfig(url="https://api.test/x", records_path="data")
    assert ApiSource.adapt_validation(single, {})["json_schema"].line_document is None


def batch_verdict(tmp_path: Path, lines: list[Any], options: JsonSchemaOptions) -> Any:
    path = tmp_path / "batch.ndjson"
    path.write_bytes(b"".join(orjson.dumps({"url": "u", "body": b}) + b"\n" for b in lines))
    return JsonSchemaValidator(options).validate(path, "pages-000001-000003.ndjson")


@pytest.mark.parametrize("schema", [RECORD, {"$defs": {"r": RECORD}, "$ref": "#/$defs/r"}])
def test_each_line_is_checked_within_its_body(tmp_path: Path, schema: dict[str, Any]) -> None:
    # a $ref schema cannot be checked a batch at a time: the line-by-line path must agree
    options = JsonSchemaOptions(schema_=schema, records_path="data", line_document="body")
    good = {"id": 1, "temperature": 1.5, "updated_at": "2026-01-01T00:00:00Z"}
    valid = batch_verdict(tmp_path, [{"data": [good, good]}, {"data": [good]}], options)
    assert valid.valid and valid.records == 3
    bad = {**good, "temperature": "hot"}
    broken = batch_verdict(tmp_path, [{"data": [good]}, {"data": [good, bad]}, {}], options)
    assert not broken.valid and broken.records == 3
    where = [i.location for i in broken.issues]
    assert where == ["line 2: $.body.data[1].temperature", "line 3: $.body.data"]
    assert "no records" in broken.issues[1].message


def test_a_single_object_body_is_one_record(tmp_path: Path) -> None:
    options = JsonSchemaOptions(schema_=RECORD, records_path="$", line_document="body")
    good = {"id": 1, "temperature": 1.5, "updated_at": "2026-01-01T00:00:00Z"}
    verdict = batch_verdict(tmp_path, [good, [good, good]], options)
    assert verdict.valid and verdict.records == 3


def test_line_document_is_no_registry_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown option"):
        JsonSchemaValidator.parse_options({"schema": RECORD, "line_document": "x"}, tmp_path)
    assert "line_document" not in json.dumps(JsonSchemaOptions.model_json_schema())
