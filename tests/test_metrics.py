"""Prometheus metrics: parsed with prometheus_client's own parser and checked against runs
whose outcome is known, from the dashboard's /metrics and from ``run --metrics-port``."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import JSON

from module_system.demo.servers import MotoServer, free_port
from module_system.state import StateStore
from module_system.state import schema as tables
from tests.dashboard_helpers import dashboard
from tests.helpers import RunJobs, pg_database
from tests.s3_helpers import s3_service
from tests.slow_api import api_service, missing_bucket_service, slow_api, write_files

GOOD = [b'{"id": 1, "day": "2026-03-01"}', b'{"id": 2, "day": "2026-03-02"}',
        b'{"id": 3, "day": "2026-03-03"}']  # fmt: skip
BAD = b'{"id": "three"}'


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[Any, float], name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Both dialects: the metrics' queries differ between them."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    with pg_database() as url:
        yield url


def test_dashboard_metrics_match_two_known_runs(
    run_jobs: RunJobs, s3: Any, s3_server: MotoServer, source_bucket: str, store_url: str
) -> None:
    state_url = store_url
    for n, body in enumerate([*GOOD, BAD]):
        s3.put_object(Bucket=source_bucket, Key=f"in/{n}.json", Body=body)
    services = {"fin": s3_service(s3_server.url, source_bucket),
                "gone": missing_bucket_service(s3_server.url)}  # fmt: skip
    jobs = [("fin_1", "fin"), ("gone_1", "gone")]
    first = run_jobs(services, jobs, state_url=state_url)
    assert [j.status for j in first.jobs] == ["completed", "failed"]
    run_jobs(services, [("fin_2", "fin")], state_url=state_url)  # all unchanged

    store = StateStore(state_url)
    with store.engine.begin() as conn:  # a job whose counts are a JSON null counts nothing
        conn.execute(tables.jobs.insert().values(run_id="r0", job_id="j0", service_id="fin",
                                                 status="cancelled", counts=JSON.NULL))  # fmt: skip
    with store.engine.connect() as conn:
        finished = conn.scalar(
            tables.jobs.select().with_only_columns(tables.jobs.c.finished_at)
            .where(tables.jobs.c.job_id == "fin_2")
        )  # fmt: skip
    with dashboard(store) as url:
        response = httpx.get(url + "/metrics")
    store.close()
    assert response.headers["content-type"].startswith("text/plain; version=")
    found = samples(response.text)

    def files(outcome: str) -> float | None:
        return value(found, "module_system_files_total", service="fin", source_type="s3",
                     outcome=outcome)  # fmt: skip

    assert (files("landed"), files("quarantined"), files("skipped"), files("failed")) == (
        3, 1, 4, 0)  # fmt: skip
    assert value(found, "module_system_bytes_total", service="fin") == sum(map(len, GOOD)) + len(
        BAD
    )
    assert value(found, "module_system_jobs_total", service="fin", status="completed") == 2
    assert value(found, "module_system_jobs_total", service="gone", status="failed") == 1
    assert value(found, "module_system_runs_total", status="failed") == 1
    assert value(found, "module_system_runs_total", status="completed") == 1
    assert value(found, "module_system_job_duration_seconds_count", service="fin") == 2
    assert value(found, "module_system_job_duration_seconds_bucket", service="fin", le="+Inf") == 2
    last = value(found, "module_system_last_success_timestamp_seconds", service="fin")
    assert last == finished.replace(tzinfo=finished.tzinfo or UTC).timestamp()
    assert value(found, "module_system_last_success_timestamp_seconds", service="gone") is None
    assert value(found, "module_system_state_up") == 1


def test_run_metrics_port_serves_the_metrics_live_while_the_run_goes(
    tmp_path: Path, landing: dict[str, Any], state_url: str
) -> None:
    port = free_port()
    with slow_api(pages=6, delay=0.5) as api_url:
        registry, batch = write_files(tmp_path, landing, {"slow": api_service(api_url)},
                                      [("slow_1", "slow")])  # fmt: skip
        command = [sys.executable, "-m", "module_system", "run", "--batch-file", str(batch),
                   "--registry", str(registry), "--state-url", state_url,
                   "--log-dir", str(tmp_path / "logs"), "--monitor-duration", "0",
                   "--metrics-port", str(port)]  # fmt: skip
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        seen_running = scrape_until_running(f"http://127.0.0.1:{port}/metrics", process)
        output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output.decode()[-3000:]
    assert seen_running, "the job was never seen running in the metrics"
    assert f"metrics: http://127.0.0.1:{port}/metrics" in output.decode()


def scrape_until_running(url: str, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        try:
            found = samples(httpx.get(url, timeout=5).text)
        except httpx.HTTPError:
            time.sleep(0.1)  # the server is not up yet
            continue
        if value(found, "module_system_jobs_total", service="slow", status="running") == 1:
            return True
        time.sleep(0.1)
    return False


def test_run_metrics_port_in_use_is_a_configuration_error(tmp_path: Path, state_url: str) -> None:
    from click.testing import CliRunner

    from module_system.cli import main

    registry, batch = write_files(tmp_path, {"bucket": "unused"},
                                  {"slow": api_service("http://127.0.0.1:9/obs")},
                                  [("slow_1", "slow")])  # fmt: skip
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, [
            "run", "--batch-file", str(batch), "--registry", str(registry),
            "--state-url", state_url, "--log-dir", str(tmp_path / "logs"),
            "--metrics-port", str(port)])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1" in result.output
