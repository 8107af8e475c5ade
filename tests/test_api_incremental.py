"""Incremental cursors across invocations: saved only after every page landed."""

from __future__ import annotations

from typing import Any

from module_system.sources.http.incremental import sort_key
from module_system.state import StateStore
from tests import api_server as harness
from tests.api_server import ApiServer, observations

INITIAL = "2026-01-01T00:00:00Z"
SOURCE = {
    "url": "/since",
    "pagination": {"type": "page_number"},
    "records_path": "items",
    "incremental": {"cursor_field": "updated_at", "param": "since", "initial": INITIAL},
}
CURSOR = "incremental:updated_at"


def records(job: harness.JobRun) -> int:
    return sum(p["details"]["records"] for p in job.pages)


def sent_since(api: ApiServer) -> list[str | None]:
    return [q.get("since") for q in api.paths("/since") if q.get("page") == "1"]


def test_second_run_starts_from_the_saved_cursor(run: Any, api: ApiServer, state_url: str) -> None:
    first = run(SOURCE)
    assert first.result.status == "completed", first.result.error
    assert records(first) == 25
    cursors = StateStore(state_url).cursors_for("weather")
    assert cursors.get(CURSOR) == "2026-01-02T01:00:00Z"  # record 25: 25 hours in

    api.state.records = observations(30)  # five new observations
    second = run(SOURCE)
    assert second.result.status == "completed", second.result.error
    assert records(second) == 5
    assert sent_since(api) == [INITIAL, "2026-01-02T01:00:00Z"]
    assert cursors.get(CURSOR) == "2026-01-02T06:00:00Z"
    first_keys = {p["landing_key"] for p in first.pages}
    assert first_keys.isdisjoint(p["landing_key"] for p in second.pages)  # no overwrites


def test_a_failed_run_does_not_advance_the_cursor(run: Any, api: ApiServer, state_url: str) -> None:
    assert run(SOURCE).result.status == "completed"
    cursors = StateStore(state_url).cursors_for("weather")
    saved = cursors.get(CURSOR)

    api.state.records = observations(45)  # 20 new: two pages
    api.state.fail_page = 2
    failed = run(SOURCE)
    assert failed.result.status == "failed"
    assert "HTTP 500" in failed.result.error
    assert cursors.get(CURSOR) == saved  # page 1 landed, but the run did not finish

    api.state.fail_page = None
    retried = run(SOURCE)
    assert retried.result.status == "completed", retried.result.error
    assert records(retried) == 20  # nothing skipped: page 1's records come again
    assert cursors.get(CURSOR) == "2026-01-02T21:00:00Z"


def test_full_refresh_ignores_the_saved_cursor(run: Any, api: ApiServer) -> None:
    run(SOURCE)
    again = run(SOURCE, options={"full_refresh": True})
    assert records(again) == 25
    assert sent_since(api) == [INITIAL, INITIAL]


def test_cursor_values_order_as_instants_and_numbers() -> None:
    assert sort_key("2026-01-01T10:00:00+02:00") < sort_key("2026-01-01T09:00:00Z")
    assert sort_key("9") < sort_key(10) < sort_key("11.5")
