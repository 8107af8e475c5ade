"""Re-running what failed (``run --rerun-failed`` and the dashboard's button, over HTTP) and
pruning old runs (``prune --older-than``), against real runs and real rows."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from module_system.cli import main
from module_system.demo.servers import MotoServer
from module_system.state import FileRecord, StateStore
from module_system.state import schema as tables
from tests.dashboard_data import FileSeed, JobSeed, seed_run
from tests.dashboard_helpers import dashboard
from tests.slow_api import missing_bucket_service, write_files

GOOD = b'{"id": 1, "temperature": 21.5}'


@pytest.fixture
def failed_run(
    tmp_path: Path, s3_server: MotoServer, landing: dict[str, Any], source_bucket: str,
    state_url: str, s3: Any,
) -> tuple[str, Path, str]:  # fmt: skip
    """A run whose job of service "late" failed: its bucket did not exist yet. Returns the
    run id, the registry, and the bucket to create to make a re-run succeed."""
    late = f"late-{uuid.uuid4().hex[:10]}"
    s3.put_object(Bucket=source_bucket, Key="ok.json", Body=GOOD)
    services = {
        "ok": {**missing_bucket_service(s3_server.url, source_bucket)},
        "late": missing_bucket_service(s3_server.url, late),
    }
    registry, batch = write_files(tmp_path, landing, services, [("ok_1", "ok"), ("late_1", "late")])
    result = cli("run", "--batch-file", batch, "--registry", registry, "--state-url", state_url,
                 "--log-dir", tmp_path / "logs", "--monitor-duration", "0")  # fmt: skip
    assert result.exit_code == 1, result.output
    return last_run(state_url)["run_id"], registry, late


def cli(*args: Any) -> Any:
    return CliRunner().invoke(main, [str(a) for a in args])


def last_run(state_url: str) -> dict[str, Any]:
    store = StateStore(state_url)
    try:
        return store.runs(1)[0]
    finally:
        store.close()


def jobs_of(state_url: str, run_id: str) -> dict[str, str]:
    store = StateStore(state_url)
    try:
        return {j["job_id"]: j["status"] for j in store.jobs(run_id)}
    finally:
        store.close()


def test_rerun_failed_runs_only_the_failed_jobs_and_links_back(
    failed_run: tuple[str, Path, str], s3: Any, state_url: str, tmp_path: Path
) -> None:
    run_id, registry, late = failed_run
    assert jobs_of(state_url, run_id) == {"ok_1": "completed", "late_1": "failed"}
    s3.create_bucket(Bucket=late)
    s3.put_object(Bucket=late, Key="x.json", Body=GOOD)
    result = cli("run", "--rerun-failed", run_id, "--registry", registry, "--state-url", state_url,
                 "--log-dir", tmp_path / "logs", "--monitor-duration", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    rerun = last_run(state_url)
    assert rerun["batch_file"] == f"rerun-failed:{run_id}"
    assert rerun["description"] == f"Re-run of failed jobs of {run_id} (Dashboard test)"
    assert jobs_of(state_url, rerun["run_id"]) == {"late_1": "completed"}

    again = cli("run", "--rerun-failed", rerun["run_id"], "--registry", registry,
                "--state-url", state_url, "--log-dir", tmp_path / "logs")  # fmt: skip
    assert again.exit_code == 0 and "nothing to re-run" in again.output


def test_rerun_failed_refuses_unknown_runs_and_mixed_arguments(
    failed_run: tuple[str, Path, str], state_url: str, tmp_path: Path
) -> None:
    run_id, registry, _ = failed_run
    common = ["--registry", registry, "--state-url", state_url, "--log-dir", tmp_path / "logs"]
    unknown = cli("run", "--rerun-failed", "no-such-run", *common)
    assert unknown.exit_code == 2 and "no run 'no-such-run' in the state store" in unknown.output
    both = cli("run", "--rerun-failed", run_id, "--batch-file", tmp_path / "batch.json", *common)
    assert both.exit_code == 2 and "either --batch-file or --rerun-failed" in both.output
    assert cli("run", *common).exit_code == 2


def test_rerun_button_starts_the_run_and_redirects_to_it(
    failed_run: tuple[str, Path, str], s3: Any, state_url: str, tmp_path: Path
) -> None:
    run_id, registry, late = failed_run
    s3.create_bucket(Bucket=late)
    store = StateStore(state_url)
    with dashboard(store, registry, tmp_path / "logs") as url:
        browser = httpx.Client(base_url=url)
        page = browser.get(f"/runs/{run_id}")
        assert "Re-run failed (1)" in page.text
        csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        response = browser.post(f"/runs/{run_id}/rerun", data={"csrf": csrf})
        assert response.status_code == 303
        new_run = response.headers["location"].removeprefix("/runs/")
        assert new_run != run_id
        wait_finished(browser, new_run)
        page = browser.get(f"/runs/{new_run}")
        assert f'Re-run of</dt><dd><a class="mono" href="/runs/{run_id}">' in page.text
        assert f'href="/runs/{new_run}"' in browser.get(f"/runs/{run_id}").text  # "Re-run as"
    store.close()
    assert jobs_of(state_url, new_run) == {"late_1": "completed"}


def wait_finished(browser: httpx.Client, run_id: str) -> None:
    deadline = time.monotonic() + 60
    while browser.get(f"/api/runs/{run_id}").json()["run"]["status"] == "running":
        assert time.monotonic() < deadline, "the re-run did not finish"
        time.sleep(0.2)


def test_rerun_button_without_a_registry_explains_itself(
    failed_run: tuple[str, Path, str], state_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    run_id, _, _ = failed_run
    monkeypatch.chdir(tmp_path / "logs")  # no project_registry.yaml to find here
    store = StateStore(state_url)
    with dashboard(store) as url:
        page = httpx.get(f"{url}/runs/{run_id}")
        assert "disabled" in page.text and "--registry" in page.text
        browser = httpx.Client(base_url=url)
        csrf = browser.get(f"/runs/{run_id}").text.split('name="csrf" value="', 1)[1][:43]
        refused = browser.post(f"/runs/{run_id}/rerun", data={"csrf": csrf})
        assert refused.status_code == 409 and "no registry given" in refused.text
    store.close()


# prune ---------------------------------------------------------------------------------
def test_prune_deletes_old_runs_keeps_running_ones_and_what_landed(state_url: str) -> None:
    store = StateStore(state_url)
    now = datetime.now(UTC)
    old = now - timedelta(days=100)
    files = [FileSeed("a.json"), FileSeed("b.json", "quarantined")]
    seed_run(store, "old", [JobSeed("j1", "svc", files=files)], started=old)
    seed_run(store, "old-stuck", [JobSeed("j2", "svc", "running")], started=old, status="running")
    seed_run(store, "recent", [JobSeed("j3", "svc", files=files)], started=now - timedelta(days=1))
    store.record_files("svc", [FileRecord("a.json", "s3://source/a.json", "v1", 1, "ab" * 32,
                                          "valid", "data/a.json", "old", "j1")])  # fmt: skip
    dry = cli("prune", "--older-than", "90d", "--dry-run", "--state-url", state_url)
    assert dry.exit_code == 0 and "would delete 1 runs, 1 jobs, 2 file records" in dry.output
    assert sorted(r["run_id"] for r in store.runs()) == ["old", "old-stuck", "recent"]

    done = cli("prune", "--older-than", "90d", "--state-url", state_url)
    assert done.exit_code == 0 and "deleted 1 runs, 1 jobs, 2 file records" in done.output
    assert sorted(r["run_id"] for r in store.runs()) == ["old-stuck", "recent"]
    with store.engine.connect() as conn:
        left = conn.execute(tables.job_files.select()).mappings().all()
    assert {r["run_id"] for r in left} == {"recent"}
    assert set(store.landed_files("svc")) == {"a.json"}  # the next run stays incremental
    store.close()


@pytest.mark.parametrize("age", ["90", "ninety days", "3y", "-1d"])
def test_prune_refuses_an_age_it_cannot_read(state_url: str, age: str) -> None:
    result = cli("prune", "--older-than", age, "--state-url", state_url)
    assert result.exit_code == 2 and "use a number and a unit" in result.output
