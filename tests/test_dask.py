"""The Dask executor on a real cluster on loopback: ``dask scheduler`` and ``dask worker``
processes, moto's S3 server and the machine's PostgreSQL. Workers run in a directory with
no checkout, so everything a job needs must travel with it."""

from __future__ import annotations

import json
import logging
import re
import signal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from module_system.cli import main
from module_system.config import BatchFile, Registry, load_batch, load_registry
from module_system.demo.servers import MotoServer
from module_system.errors import ConfigError
from module_system.observability.logging import ROOT_LOGGER, setup_logging
from module_system.orchestrator.batch import run_batch
from module_system.orchestrator.cluster_limits import PLUGIN_NAME
from module_system.orchestrator.dask_executor import DaskJobExecutor
from module_system.orchestrator.stats import BatchStats
from module_system.pipeline import RunOptions
from module_system.results import BatchResult, JobStatus
from module_system.sources.http import ratelimit
from module_system.state import StateStore
from tests import api_server as harness
from tests.api_server import ApiServer
from tests.dask_cluster import DaskCluster, dask_cluster, gate_proxy, wait_until
from tests.helpers import list_keys, pg_database, read_json, write_batch, write_registry

pytestmark = pytest.mark.timeout(240)
SCHEMA = {
    "type": "object",
    "required": ["id", "day"],
    "properties": {"id": {"type": "integer"}, "day": {"type": "string", "format": "date"}},
}


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A database of its own on the machine's PostgreSQL."""
    with pg_database() as url:
        yield url


@pytest.fixture
def client_logging(tmp_path: Path) -> Iterator[Path]:
    """The client's logging as the run command sets it up; put back afterwards."""
    logger = logging.getLogger(ROOT_LOGGER)
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    setup_logging(tmp_path / "logs")
    yield tmp_path / "logs"
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    with dask_cluster(tmp_path_factory.mktemp("dask")) as started:
        yield started


def put_files(s3: Any, bucket: str, prefix: str, count: int, invalid: int = 0) -> dict[str, bytes]:
    """``count`` valid JSON files (and ``invalid`` bad ones) under ``prefix``: key -> bytes."""
    files = {
        f"{prefix}f{n:02d}.json": json.dumps({"id": n, "day": f"2026-01-{n % 28 + 1:02d}"}).encode()
        for n in range(count)
    }
    files.update({f"{prefix}bad{n}.json": b'{"id": "x"}' for n in range(invalid)})
    for key, body in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    return files


def s3_service(endpoint: str, bucket: str, prefix: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "s3",
        "source": {"bucket": bucket, "prefix": prefix, "endpoint_url": endpoint},
        "validation": {"json_schema": SCHEMA},
        "concurrency": 1,
        "retry": {"attempts": 3, "backoff": 0.01, "max_backoff": 0.05},
        **extra,
    }


def landing(bucket: str, server: MotoServer) -> dict[str, Any]:
    return {"bucket": bucket, "endpoint_url": server.url}


def load(
    tmp_path: Path, landing: dict[str, Any], services: dict[str, Any], jobs: list[tuple[str, str]]
) -> tuple[Registry, BatchFile]:
    registry = load_registry(write_registry(tmp_path / "registry.yaml", landing, services))
    return registry, load_batch(write_batch(tmp_path / "batch.json", jobs), registry)


def run_on(
    executor: DaskJobExecutor | None,
    registry: Registry,
    batch: BatchFile,
    state_url: str,
    stats: BatchStats | None = None,
    **options: Any,
) -> BatchResult:
    state = StateStore(state_url)
    try:
        return run_batch(
            registry, batch, state, executor=executor, stats=stats, options=RunOptions(**options)
        )
    finally:
        state.close()


def contents(s3: Any, bucket: str, prefix: str = "data/") -> dict[str, bytes]:
    return {
        key: s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        for key in list_keys(s3, bucket, prefix)
    }


def manifest_files(s3: Any, bucket: str, key: str) -> list[tuple[Any, ...]]:
    files = read_json(s3, bucket, key)["files"]
    return sorted((f["source_uri"], f["outcome"], f["landing_key"], f["sha256"]) for f in files)


def test_a_batch_on_the_cluster_lands_what_a_local_run_lands(
    tmp_path: Path,
    client_logging: Path,
    s3: Any,
    s3_server: MotoServer,
    source_bucket: str,
    pg_url: str,
    cluster: DaskCluster,
) -> None:
    put_files(s3, source_bucket, "a/", 4, invalid=1)
    put_files(s3, source_bucket, "b/", 3)
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "record.json").write_text(json.dumps(SCHEMA))
    services = {  # the schema file is read here, on the client: workers have no copy
        "files_a": s3_service(
            s3_server.url, source_bucket, "a/", validation={"json_schema": "schemas/record.json"}
        ),
        "files_b": s3_service(s3_server.url, source_bucket, "b/"),
    }
    jobs = [("a1", "files_a"), ("b1", "files_b"), ("a2", "files_a")]
    outcomes: dict[str, dict[str, Any]] = {}
    for where in ("local", "dask"):
        bucket = f"landing-{where}-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        registry, batch = load(tmp_path, landing(bucket, s3_server), services, jobs)
        stats = BatchStats()
        if where == "local":
            result = run_on(None, registry, batch, f"sqlite:///{tmp_path / 'state.db'}", stats)
        else:
            executor = DaskJobExecutor(cluster.address, connect_timeout=10)
            result = run_on(executor, registry, batch, pg_url, stats, log_dir=tmp_path / "logs")
        data = contents(s3, bucket)
        outcomes[where] = {
            "jobs": [(j.job_id, j.status, j.counts) for j in result.jobs],
            "data": {k: v for k, v in data.items() if not re.search("/_(manifests|logs)/", k)},
            "manifests": [manifest_files(s3, bucket, j.manifest_key or "") for j in result.jobs],
            "progress": {k: v for k, v in stats.snapshot().__dict__.items() if k != "elapsed"},
        }
    local, remote = outcomes["local"], outcomes["dask"]
    assert [s for _, s, _ in remote["jobs"]] == [JobStatus.COMPLETED] * 3
    assert remote["jobs"] == local["jobs"]
    assert remote["data"] == local["data"] and len(local["data"]) == 4 + 2 + 3  # 2: bad + report
    assert [[f[1:] for f in m] for m in remote["manifests"]] == [
        [f[1:] for f in m] for m in local["manifests"]
    ]
    assert remote["progress"] == local["progress"]  # the workers' progress reached the client
    job_log = (client_logging / "a1_files_a_s3_module.log").read_text()
    assert "job started" in job_log and "job completed" in job_log
    uploaded = s3.get_object(Bucket=bucket, Key="data/s3/files_a/_logs/a1.log")["Body"].read()
    assert b"job completed" in uploaded


def test_a_worker_killed_mid_job(
    tmp_path: Path,
    s3: Any,
    s3_server: MotoServer,
    source_bucket: str,
    landing_bucket: str,
    pg_url: str,
) -> None:
    """The job's task runs again on the other worker: every valid file lands once with
    the source's bytes, the manifest lists each once, and a re-run lands nothing."""
    files = put_files(s3, source_bucket, "in/", 8)
    service_id = f"killed_{uuid.uuid4().hex[:6]}"
    sixth = "/in/f05.json"
    with (
        dask_cluster(tmp_path / "dask") as cluster,
        gate_proxy(
            s3_server.url, lambda method, path: method == "GET" and path.endswith(sixth)
        ) as proxy,
    ):
        registry, batch = load(
            tmp_path,
            landing(landing_bucket, s3_server),
            {service_id: s3_service(proxy.url, source_bucket, "in/")},
            [("k1", service_id)],
        )
        executor = DaskJobExecutor(cluster.address, connect_timeout=10)

        def kill_the_worker_mid_job() -> None:
            proxy.wait_held(1)  # five files landed, the sixth is being fetched
            cluster.kill_worker_at(executor.placements["k1"][0])
            proxy.release()

        threading.Thread(target=kill_the_worker_mid_job, daemon=True).start()
        result = run_on(executor, registry, batch, pg_url)
        (job,) = result.jobs
        assert job.status is JobStatus.COMPLETED, job.error
        assert len(set(executor.placements["k1"])) == 2
        assert any("restarted 1 time" in note for note in job.notes)
        root = f"data/s3/{service_id}/"
        landed = contents(s3, landing_bucket, root + "validated/")
        assert landed == {root + "validated/" + k.removeprefix("in/"): v for k, v in files.items()}
        assert list_keys(s3, landing_bucket, root + "_staging/") == []
        assert job.log_file == f"s3://{landing_bucket}/{root}_logs/k1.log"  # no local log dir
        assert list_keys(s3, landing_bucket, root + "_logs/") == [root + "_logs/k1.log"]
        entries = read_json(s3, landing_bucket, job.manifest_key or "")["files"]
        assert sorted(e["key"] for e in entries) == sorted(k.removeprefix("in/") for k in files)
        store = StateStore(pg_url)
        assert len(store.landed_files(service_id, {k.removeprefix("in/") for k in files})) == 8
        store.close()

        again = run_on(
            DaskJobExecutor(cluster.address, connect_timeout=10), registry, batch, pg_url
        )
        counts = again.jobs[0].counts
        assert again.jobs[0].status is JobStatus.COMPLETED
        assert (counts.skipped, counts.uploaded, counts.valid) == (8, 0, 0)


def test_the_scheduler_killed_mid_batch(
    tmp_path: Path,
    s3: Any,
    s3_server: MotoServer,
    source_bucket: str,
    landing_bucket: str,
    pg_url: str,
    cluster: DaskCluster,
) -> None:
    """The client says which jobs did not finish and exits 1; a re-run (on another
    cluster) completes them."""
    tag = uuid.uuid4().hex[:6]
    put_files(s3, source_bucket, "one/", 3)
    put_files(s3, source_bucket, "two/", 3)
    services = {
        f"one_{tag}": s3_service("", source_bucket, "one/"),
        f"two_{tag}": s3_service("", source_bucket, "two/"),
    }
    jobs = [("j1", f"one_{tag}"), ("j2", f"two_{tag}"), ("j3", f"one_{tag}")]
    target = landing(landing_bucket, s3_server)

    def object_get(method: str, path: str) -> bool:
        path = path.split("?")[0]
        return method == "GET" and ("/one/" in path or "/two/" in path)

    with (
        dask_cluster(tmp_path / "first") as doomed,
        gate_proxy(s3_server.url, object_get) as proxy,
    ):
        for service in services.values():
            service["source"]["endpoint_url"] = proxy.url
        registry, batch = load(tmp_path, target, services, jobs)

        def kill_the_scheduler() -> None:
            proxy.wait_held(2)  # both services' jobs are fetching
            doomed.kill_scheduler()

        threading.Thread(target=kill_the_scheduler, daemon=True).start()
        result = run_on(DaskJobExecutor(doomed.address, connect_timeout=5), registry, batch, pg_url)
        proxy.release()
        # The workers lost the scheduler too: their jobs stop after the current file.
        store = StateStore(pg_url)

        def recorded() -> dict[str, str]:
            return {j["job_id"]: j["status"] for j in store.jobs(result.run_id)}

        wait_until(lambda: recorded() == {"j1": "cancelled", "j2": "cancelled", "j3": "failed"})
        store.close()
    assert result.exit_code() == 1
    errors = {j.job_id: (j.status, j.error or "") for j in result.jobs}
    for job_id in ("j1", "j2"):
        assert errors[job_id][0] is JobStatus.FAILED
        assert errors[job_id][1].startswith("did not finish: the client lost the Dask scheduler")
    assert errors["j3"] == (JobStatus.FAILED, "not started: the Dask scheduler is gone")

    for service in services.values():  # a new cluster, the S3 server without the proxy
        service["source"]["endpoint_url"] = s3_server.url
    registry, batch = load(tmp_path, target, services, jobs)
    again = run_on(DaskJobExecutor(cluster.address, connect_timeout=10), registry, batch, pg_url)
    assert [j.status for j in again.jobs] == [JobStatus.COMPLETED] * 3, again.jobs
    for service_id in services:
        assert len(list_keys(s3, landing_bucket, f"data/s3/{service_id}/validated/")) == 3


def test_ctrl_c_cancels_jobs_not_started_on_the_cluster(
    tmp_path: Path,
    s3: Any,
    s3_server: MotoServer,
    source_bucket: str,
    landing_bucket: str,
    pg_url: str,
    cluster: DaskCluster,
) -> None:
    tag = uuid.uuid4().hex[:6]
    for n in range(3):
        put_files(s3, source_bucket, f"c{n}/", 5)
    with gate_proxy(s3_server.url, lambda m, p: m == "GET" and "/c" in p.split("?")[0]) as proxy:
        services = {f"c{n}_{tag}": s3_service(proxy.url, source_bucket, f"c{n}/") for n in range(3)}
        registry, batch = load(
            tmp_path,
            landing(landing_bucket, s3_server),
            services,
            [(f"job{n}", f"c{n}_{tag}") for n in range(3)],
        )
        executor = DaskJobExecutor(cluster.address, connect_timeout=10)
        main_thread = threading.main_thread().ident
        assert main_thread is not None

        def press_ctrl_c() -> None:
            proxy.wait_held(2)  # two jobs run (one per worker); the third waits for a worker
            signal.pthread_kill(main_thread, signal.SIGINT)
            executor.cancelled.wait(30)
            proxy.release()

        threading.Thread(target=press_ctrl_c, daemon=True).start()
        result = run_on(executor, registry, batch, pg_url)
    assert result.interrupted and result.exit_code() == 1
    assert [j.status for j in result.jobs] == [JobStatus.CANCELLED] * 3
    started = [j for j in result.jobs if j.error != "not started: batch interrupted"]
    assert len(started) == 2
    for job in started:
        assert 1 <= job.counts.uploaded < 5 and job.counts.failed == 0
    with cluster.client() as client:  # the batch's cancel event was cleared afterwards
        events = client.run_on_scheduler(
            lambda dask_scheduler: list(dask_scheduler.extensions["events"]._events)
        )
    assert [name for name in events if result.run_id in name] == []


def test_a_worker_without_a_plugin_of_the_client_fails_the_batch_early(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3_server: MotoServer,
    pg_url: str,
    cluster: DaskCluster,
) -> None:
    site = tmp_path / "site"
    info = site / "fake_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[module_system.sources]\nfake = fake_plugin:Source\n")
    monkeypatch.syspath_prepend(str(site))  # installed here, on the client only
    description = f"plugin check {uuid.uuid4().hex[:6]}"
    registry, batch = load(
        tmp_path,
        landing("landing", s3_server),
        {"svc": s3_service(s3_server.url, "source", "in/")},
        [("j", "svc")],
    )
    batch = batch.model_copy(update={"description": description})
    with pytest.raises(ConfigError) as raised:
        run_on(DaskJobExecutor(cluster.address, connect_timeout=10), registry, batch, pg_url)
    problems = raised.value.problems
    assert problems[0] == "the Dask workers cannot run this batch:"
    assert sorted(problems[1:]) == sorted(
        f"worker {address}: source plugin 'fake' (fake-plugin 1.0) is installed on the client "
        "but not here"
        for _, address in cluster.workers.values()
    )
    store = StateStore(pg_url)
    assert description not in [r["description"] for r in store.runs(100)]  # nothing ran
    store.close()


def test_an_api_rate_limit_holds_across_the_cluster(
    tmp_path: Path,
    api: ApiServer,
    s3: Any,
    s3_server: MotoServer,
    landing_bucket: str,
    pg_url: str,
    cluster: DaskCluster,
) -> None:
    """Two jobs calling one API host on two workers take their tokens from one bucket."""
    api.reset()
    host = api.url.removeprefix("http://")
    source = {
        "url": api.url + "/pages",
        "pagination": {"type": "page_number"},
        "records_path": "data.items",
        "rate_limit": {"requests_per_second": 20},
    }
    tag = uuid.uuid4().hex[:6]
    services = {f"one_{tag}": harness.service(source), f"two_{tag}": harness.service(source)}
    registry, batch = load(
        tmp_path,
        landing(landing_bucket, s3_server),
        services,
        [("api1", f"one_{tag}"), ("api2", f"two_{tag}")],
    )
    executor = DaskJobExecutor(cluster.address, connect_timeout=10)
    result = run_on(executor, registry, batch, pg_url)
    assert [j.status for j in result.jobs] == [JobStatus.COMPLETED] * 2, [
        j.error for j in result.jobs
    ]
    assert executor.placements["api1"] != executor.placements["api2"]  # on both workers
    with cluster.client() as client:
        buckets = client.run_on_scheduler(
            lambda dask_scheduler: dask_scheduler.plugins[PLUGIN_NAME].stats()
        )
        local = client.run(lambda: len(ratelimit._buckets))
    assert buckets[host]["granted"] == len(api.paths("/pages")) == 8
    assert buckets[host]["rate"] == 20
    assert set(local.values()) == {0}  # no worker kept a bucket of its own


def test_local_workers(
    tmp_path: Path, s3: Any, s3_server: MotoServer, source_bucket: str, landing_bucket: str
) -> None:
    put_files(s3, source_bucket, "in/", 2)
    registry, batch = load(
        tmp_path,
        landing(landing_bucket, s3_server),
        {"svc": s3_service(s3_server.url, source_bucket, "in/")},
        [("j", "svc")],
    )
    result = run_on(
        DaskJobExecutor(local_workers=1), registry, batch, f"sqlite:///{tmp_path / 'state.db'}"
    )  # a local cluster may share SQLite
    assert result.jobs[0].status is JobStatus.COMPLETED, result.jobs[0].error
    assert len(list_keys(s3, landing_bucket, "data/s3/svc/validated/")) == 2


def test_the_run_command_on_a_cluster(
    tmp_path: Path,
    s3: Any,
    s3_server: MotoServer,
    source_bucket: str,
    landing_bucket: str,
    pg_url: str,
    cluster: DaskCluster,
) -> None:
    put_files(s3, source_bucket, "cli/", 2)
    tag = uuid.uuid4().hex[:6]
    write_registry(
        tmp_path / "registry.yaml",
        landing(landing_bucket, s3_server),
        {f"cli_{tag}": s3_service(s3_server.url, source_bucket, "cli/")},
    )
    write_batch(tmp_path / "batch.json", [("cli1", f"cli_{tag}")])
    args = [
        "run",
        "--batch-file",
        str(tmp_path / "batch.json"),
        "--registry",
        str(tmp_path / "registry.yaml"),
        "--log-dir",
        str(tmp_path / "logs"),
        "--monitor-duration",
        "0",
        "--executor",
        "dask",
    ]
    ran = CliRunner().invoke(
        main,
        [*args, "--state-url", pg_url, "--report", str(tmp_path / "report.json")],
        env={"MODULE_SYSTEM_DASK_SCHEDULER": cluster.address},
    )
    assert ran.exit_code == 0, ran.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert [j["status"] for j in report["jobs"]] == ["completed"]
    assert report["jobs"][0]["counts"]["valid"] == 2

    sqlite = f"sqlite:///{tmp_path / 'state.db'}"
    refused = CliRunner().invoke(
        main, [*args, "--state-url", sqlite, "--scheduler", cluster.address]
    )
    assert refused.exit_code == 2
    assert "SQLite file on this machine" in refused.output
    missing = CliRunner().invoke(main, args)
    assert missing.exit_code == 2 and "--executor dask needs --scheduler" in missing.output
