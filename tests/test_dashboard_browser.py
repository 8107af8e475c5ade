"""The dashboard in a real browser (Playwright driving Debian's Chromium, headless), against
a real batch: a deliberately slow API job and a job that fails. Watch the slow job go from
running to completed without a reload, open its quarantined page and read the validator's
message, press "re-run failed" and see the new run. Screenshots are kept in pytest's tmp
dir (not committed). Skipped only when Chromium is not installed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from module_system.state import StateStore
from tests.dashboard_data import sample_runs
from tests.dashboard_helpers import dashboard
from tests.slow_api import api_service, missing_bucket_service, slow_api, write_files

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs /usr/bin/chromium")
GOOD = b'{"id": 1, "temperature": 21.5}'


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    return folder


def start_batch(
    tmp_path: Path, landing: dict[str, Any], api_url: str, late: str, state_url: str
) -> subprocess.Popen[bytes]:
    late_service = missing_bucket_service(landing["endpoint_url"], late)
    services = {"slow_api": api_service(api_url), "late": late_service}
    jobs = [("weather_001", "slow_api"), ("late_001", "late")]
    registry, batch = write_files(tmp_path, landing, services, jobs)
    command = [sys.executable, "-m", "module_system", "run", "--batch-file", str(batch),
               "--registry", str(registry), "--state-url", state_url, "--max-workers", "2",
               "--log-dir", str(tmp_path / "logs"), "--monitor-duration", "0"]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def first_run_id(url: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        runs = httpx.get(url + "/api/runs").json()["runs"]
        if runs and runs[0]["jobs_by_status"].get("running"):
            return str(runs[0]["run_id"])
        time.sleep(0.05)
    raise AssertionError("the batch never showed a running job")


def test_watch_a_run_read_a_quarantined_file_and_rerun_what_failed(
    browser: Any, shots: Path, tmp_path: Path, s3: Any, landing: dict[str, Any], state_url: str
) -> None:
    late = f"late-{uuid.uuid4().hex[:10]}"
    store = StateStore(state_url)
    with (
        slow_api(pages=8, delay=0.8, bad_page=3) as api_url,
        dashboard(store, tmp_path / "registry.yaml", tmp_path / "logs") as url,
    ):
        process = start_batch(tmp_path, landing, api_url, late, state_url)
        try:
            run_id = first_run_id(url, process)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(url + "/")
            page.click(f"a[href='/runs/{run_id}']")  # the runs page links to the run
            page.wait_for_url(f"**/runs/{run_id}")
            watch_the_job_finish_without_a_reload(page, shots)
            read_the_quarantined_file(page, shots)
            process.wait(timeout=60)
            s3.create_bucket(Bucket=late)  # what made the job fail is fixed ...
            s3.put_object(Bucket=late, Key="x.json", Body=GOOD)
            rerun_what_failed(page, run_id, shots)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
    store.close()


def watch_the_job_finish_without_a_reload(page: Any, shots: Path) -> None:
    row = page.locator("tr#job-weather_001")
    status, listed = row.locator("td.job-status"), row.locator("td.num").first
    assert status.inner_text() == "running"
    page.evaluate("window.__notReloaded = true")
    seen_while_running = [listed.inner_text()]
    page.screenshot(path=shots / "run-running.png", full_page=True)
    deadline = time.monotonic() + 60
    while status.inner_text() == "running":
        assert time.monotonic() < deadline, "the job never finished on the page"
        seen_while_running.append(listed.inner_text())
        page.wait_for_timeout(200)
    assert status.inner_text() == "completed"
    assert page.evaluate("window.__notReloaded") is True  # updated in place
    assert listed.inner_text() == "9"  # 8 pages and the empty one that ends the paging
    assert seen_while_running[0] != "9"  # the counter moved on the open page
    page.screenshot(path=shots / "run-finished.png", full_page=True)


def read_the_quarantined_file(page: Any, shots: Path) -> None:
    page.click("a[href$='/jobs/weather_001']")
    page.click("nav.tabs a:has-text('quarantined')")
    page.wait_for_url("**outcome=quarantined")
    rows = page.locator("tr.file")
    assert rows.count() == 1 and "page=3" in rows.first.inner_text()
    page.click("details.messages summary")
    messages = page.locator("details.messages table")
    assert messages.is_visible()
    text = messages.inner_text()
    assert '"hot" is not of type "number"' in text or "'hot' is not of type 'number'" in text
    assert "temperature" in text  # where: the record's JSON path
    page.screenshot(path=shots / "job-quarantined.png", full_page=True)


def rerun_what_failed(page: Any, run_id: str, shots: Path) -> None:
    page.click(f"div.crumbs a[href='/runs/{run_id}']")
    page.wait_for_url(f"**/runs/{run_id}")
    page.wait_for_selector("h1 .status.st-failed")
    assert page.locator("tr#job-late_001 td.job-status").inner_text() == "failed"
    page.click("button:has-text('Re-run failed (1)')")
    page.wait_for_url(lambda u: "/runs/" in u and not u.endswith(run_id))
    assert page.locator(f".facts a[href='/runs/{run_id}']").is_visible()  # "Re-run of"
    page.wait_for_selector("h1 .status.st-completed", timeout=60_000)  # live, no reload
    assert page.locator("tr#job-late_001 td.job-status").inner_text() == "completed"
    assert page.locator("tr[id^='job-']").count() == 1  # only the job that had failed
    page.screenshot(path=shots / "rerun.png", full_page=True)


def test_pages_read_without_javascript_and_statuses_read_in_grey(
    browser: Any, shots: Path, tmp_path: Path
) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    sample_runs(store)
    with dashboard(store) as url:
        viewport = {"width": 1440, "height": 900}
        context = browser.new_context(java_script_enabled=False, viewport=viewport)
        page = context.new_page()
        page.goto(url + "/")
        assert page.locator("tbody tr").count() == 3
        page.click("a[href='/runs/run-b']")
        assert page.locator("tr#job-ftp_002 td.job-status").inner_text() == "failed"
        assert page.locator("tr#job-api_002 td.job-status").inner_text() == "cancelled"
        page.screenshot(path=shots / "no-js-run.png", full_page=True)
        page.goto(url + "/runs/run-c")
        badges = badge_colours(page)
        page.goto(url + "/runs/run-a/jobs/fin_001")
        page.click("details.messages summary")  # <details> opens without JavaScript
        assert page.locator("details.messages table").is_visible()
        page.goto(url + "/runs/run-b")
        badges.update(badge_colours(page))
        page.evaluate("document.documentElement.style.filter = 'grayscale(1)'")
        page.screenshot(path=shots / "grey-run.png", full_page=True)
    store.close()
    # each status's word stands out from its badge in grey too (WCAG AA contrast) ...
    for status, (text, fill) in badges.items():
        assert contrast(text, fill) >= 4.5, status
    # ... and good and bad fills differ in lightness, not only in hue
    assert abs(luminance(badges["completed"][1]) - luminance(badges["failed"][1])) > 0.5


def badge_colours(page: Any) -> dict[str, tuple[str, str]]:
    found = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('td .status')].map(e => {
               const s = getComputedStyle(e); return [e.textContent, [s.color, s.backgroundColor]];
           }))"""
    )
    return {k: (v[0], v[1]) for k, v in found.items()}


def luminance(css: str) -> float:
    channels = [int(float(c)) / 255 for c in css[css.index("(") + 1 : -1].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)
