"""The dashboard's pages over real HTTP, on SQLite and PostgreSQL, against known rows:
what each page shows, filters, paging, links from page to page, and the live fragment."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from module_system.state import StateStore
from tests.dashboard_data import T0, FileSeed, JobSeed, sample_runs, seed_run
from tests.dashboard_helpers import dashboard
from tests.helpers import pg_database


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    with pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    store = StateStore(url)
    with store.engine.begin() as conn:  # the PostgreSQL database is shared by the module
        for table in ("ms_job_files", "ms_jobs", "ms_runs", "ms_files", "ms_cursors"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    sample_runs(store)
    yield store
    store.close()


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    services = {
        "s3_financial_data": {"type": "s3", "description": "Finance exports", "source": {}},
        "ftp_reports": {"type": "ftp", "source": {}},
        "never_ran": {"type": "sftp", "description": "Not scheduled yet", "source": {}},
    }
    path = tmp_path / "registry.yaml"
    path.write_text(yaml.safe_dump({"landing": {"bucket": "x"}, "services": services}))
    return path


@pytest.fixture
def site(store: StateStore, registry: Path, tmp_path: Path) -> Iterator[str]:
    with dashboard(store, registry, tmp_path / "logs") as url:
        yield url


def get(url: str) -> str:
    response = httpx.get(url, headers={"Accept": "text/html"})
    assert response.status_code == 200, response.text[:500]
    return response.text


def rows(html: str) -> list[str]:
    """The text of each body row of the page's first table, tags removed."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [" ".join(re.sub(r"<[^>]+>", " ", "<tr" + r).split()) for r in body.split("<tr")[1:]]


def test_runs_page_lists_runs_newest_first_with_words_and_counts(site: str) -> None:
    html = get(site + "/")
    run_c, run_b, run_a = rows(html)
    assert run_c.startswith("run-c running Nightly 3")
    assert "1 running 1 queued" in run_c  # job statuses as words, "pending" read as "queued"
    assert run_b.startswith("run-b failed Nightly 2 2026-03-02 08:00:00 5 min 00 s")
    assert "1 completed 1 failed 1 cancelled" in run_b
    # landed, quarantined, unchanged, failed, bytes
    assert run_a.endswith("6 1 1 0 5.3 KB")
    assert 'href="/runs/run-b"' in html
    assert "data-live" in html  # run-c is running: the page refreshes itself


def test_runs_filter_by_status_and_by_service(site: str) -> None:
    assert [r.split()[0] for r in rows(get(site + "/?status=failed"))] == ["run-b"]
    assert [r.split()[0] for r in rows(get(site + "/?service=ftp_reports"))] == ["run-b"]
    assert [r.split()[0] for r in rows(get(site + "/?service=web_news"))] == ["run-a"]
    html = get(site + "/?status=completed&service=ftp_reports")
    assert "No run matches these filters" in html
    # the filter form offers every known service, from the store and the registry
    assert '<option value="never_ran">' in html and '<option value="web_news">' in html


def test_runs_are_paged_with_links(store: StateStore, site: str) -> None:
    for n in range(55):
        started = T0 - timedelta(days=1, minutes=n)
        seed_run(store, f"old-{n:02d}", [JobSeed(f"j{n}", "web_news")], started=started)
    first, second = get(site + "/"), get(site + "/?page=2")
    assert len(rows(first)) == 50 and len(rows(second)) == 8
    assert "Page 1 of 2" in first and 'href="?page=2" rel="next"' in first
    assert rows(second)[-1].startswith("old-54")
    assert 'href="?status=completed&amp;page=2"' in get(site + "/?status=completed")


def test_run_page_shows_jobs_errors_retries_timeline_and_rerun_button(site: str) -> None:
    html = get(site + "/runs/run-b")
    fin, ftp, ftp_error, api, api_error = rows(html)[:5]
    assert fin.startswith("fin_002 s3_financial_data s3 completed 2 2 0 0 0 0 0 2.0 KB 12.0 s")
    assert ftp.startswith("ftp_002 ftp_reports ftp failed 1 0")
    assert "connection_lost \u00d71" in ftp and "ftp_421 \u00d74" in ftp
    assert ftp_error == "Error 1 of 1 files failed; first: ftp_421: too many connections"
    assert api.startswith("api_002 api_weather api cancelled")
    assert api_error == "Error not started: batch interrupted"
    assert 'href="/runs/run-b/jobs/ftp_002"' in html
    assert "Re-run failed (2)" in html and 'name="csrf"' in html
    assert html.count('class="lane"') == 3  # one timeline lane per started job
    assert "data-live" not in html


def test_run_page_of_a_completed_run_has_no_rerun_button(site: str) -> None:
    html = get(site + "/runs/run-a")
    assert "Re-run failed" not in html
    assert "6</span> landed" in html and "1</span> quarantined" in html


def test_job_page_lists_files_and_shows_validator_messages(site: str) -> None:
    html = get(site + "/runs/run-a/jobs/fin_001")
    assert "s3://source/daily/000.json" in html
    assert "data/s3/s3_financial_data/quarantine/daily/bad.json" in html
    assert 'title="' + "ab" * 32 + '"' in html  # the full SHA-256, shortened in the cell
    messages = html.split('class="messages"', 1)[1].split("</details>", 1)[0]
    assert "2 validator messages" in messages
    assert "$[2]" in messages and "&#39;amount&#39; is a required property" in messages
    assert "row 7, column price" in messages
    assert ">unchanged<" in html  # the "skipped" outcome, as the word users read


def test_job_page_filters_by_outcome_with_counts(site: str) -> None:
    html = get(site + "/runs/run-a/jobs/fin_001")
    assert 'href="?outcome=quarantined"' in html
    tabs = html.split('<nav class="tabs"', 1)[1].split("</nav>", 1)[0]
    assert " ".join(re.sub(r"<[^>]+>", " ", "<" + tabs).split()) == (
        "all 7 landed 5 quarantined 1 unchanged 1"
    )
    only = get(site + "/runs/run-a/jobs/fin_001?outcome=quarantined")
    assert "daily/bad.json" in only and "daily/000.json" not in only


def test_job_page_pages_through_many_files(store: StateStore, site: str) -> None:
    files = [FileSeed(f"f/{n:04d}.json") for n in range(450)]
    seed_run(store, "big", [JobSeed("big_001", "s3_financial_data", files=files)])
    first = get(site + "/runs/big/jobs/big_001")
    last = get(site + "/runs/big/jobs/big_001?page=3")
    assert "Page 1 of 3" in first and "f/0199.json" in first and "f/0200.json" not in first
    assert "f/0400.json" in last and "f/0449.json" in last and "f/0399.json" not in last


def test_job_page_shows_the_log_lines_of_this_run_of_the_job(
    store: StateStore, site: str, tmp_path: Path
) -> None:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    started = T0 + timedelta(days=1, seconds=10)  # ftp_002 ran from +10 s to +22 s
    lines = [
        (started - timedelta(days=1), "ERROR", "an earlier run of this job id"),
        (started + timedelta(seconds=1), "INFO", "job started: service ftp_reports (ftp)"),
        (started + timedelta(seconds=5), "ERROR", "r.csv: ftp_421: too many connections"),
    ]
    with (log_dir / "ftp_002_ftp_reports_ftp_module.log").open("w") as out:
        for ts, level, message in lines:
            out.write(json.dumps({"ts": ts.isoformat(), "level": level, "message": message}) + "\n")
        out.write("not json\n")
    html = get(site + "/runs/run-b/jobs/ftp_002")
    log = html.split('id="job-log"', 1)[1]
    assert "2 lines from" in log and "too many connections" in log
    assert "an earlier run" not in log
    assert "<h2>Log</h2>" not in get(site + "/runs/run-a/jobs/fin_001")  # no file: no section


def test_services_page(store: StateStore, site: str) -> None:
    store.set_cursor("api_weather", "since", "2026-03-01T00:00:00Z")
    html = get(site + "/services")
    by_service = {r.split()[0]: r for r in rows(html)}
    assert by_service["never_ran"] == "never_ran Not scheduled yet sftp never ran — — 0 0 —"
    assert by_service["ftp_reports"].startswith(
        "ftp_reports ftp ftp_002 2026-03-02 08:00:10 failed"
    )
    assert " 1 0 " in by_service["ftp_reports"]  # one failure in a row, no files known
    assert "since = 2026-03-01T00:00:00Z" in by_service["api_weather"]
    assert 'href="/?service=ftp_reports"' in html
    assert 'href="/runs/run-c/jobs/fin_003"' in html


def test_fragment_is_the_main_part_only_and_live_while_running(site: str) -> None:
    fragment = get(site + "/runs/run-c?fragment=1")
    assert "<html" not in fragment and "<header" not in fragment
    assert 'data-live="1500"' in fragment and "fin_003" in fragment
    assert "data-live" not in get(site + "/runs/run-a?fragment=1")


def test_unknown_run_and_job_are_404_pages_with_a_way_back(site: str) -> None:
    for path in ("/runs/nope", "/runs/run-a/jobs/nope"):
        response = httpx.get(site + path)
        assert response.status_code == 404
        assert 'href="/"' in response.text and "may have been pruned" in response.text


def test_every_page_links_onwards_no_url_typed(site: str) -> None:
    """From the runs page a user reaches every run, job and service page by links."""
    seen: set[str] = set()
    queue = ["/"]
    while queue:
        path = queue.pop()
        if path in seen or len(seen) > 60:
            continue
        seen.add(path)
        html = get(site + path)
        for link in re.findall(r'href="(/[^"?#]*)', html):
            if not link.startswith(("/static", "/api", "/metrics")):
                queue.append(link)
    assert {"/runs/run-a", "/runs/run-b/jobs/ftp_002", "/runs/run-c/jobs/api_003",
            "/services"} <= seen  # fmt: skip
