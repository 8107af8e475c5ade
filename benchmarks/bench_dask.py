"""The Dask executor: does a CPU-bound batch scale over worker processes, and what does
running a job as a Dask task cost compared with the thread pool?

1. CPU-bound batch: ``--files`` CSV files of ``--mb`` MB across ``--services`` services
   (one job each), checked against a table schema, on a local cluster of one and then two
   single-threaded worker processes. Files come from a synthetic source type (a copy of one
   CSV file on local disk, registered through the ``module_system.sources`` entry point of
   a throwaway distribution put on ``PYTHONPATH``), so reading them costs next to nothing
   and validation dominates. Run with the CSV file read as UTF-8 (the Arrow fast path) and
   as Latin-1 (the pure-Python path, which holds the GIL: the case processes are for).
2. Overhead per job: ``--tiny`` jobs of one two-byte file each (one service per job, so
   none wait for another), on the thread pool with 2 threads and on 2 single-threaded
   worker processes; the difference in wall time per job.

Landing is moto's S3 server on loopback; the state store is a throwaway database on the
machine's PostgreSQL. Workers are warmed up (imports, connections) before measuring.

    .venv/bin/python benchmarks/bench_dask.py [--files 40] [--mb 20] [--services 4] [--tiny 200]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distributed import LocalCluster  # noqa: E402

from module_system.config import load_batch, load_registry  # noqa: E402
from module_system.demo.servers import DEMO_CREDENTIALS, MotoServer  # noqa: E402
from module_system.orchestrator.batch import run_batch  # noqa: E402
from module_system.orchestrator.dask_executor import DaskJobExecutor  # noqa: E402
from module_system.orchestrator.executor import JobExecutor, ThreadJobExecutor  # noqa: E402
from module_system.pipeline import RunOptions  # noqa: E402
from module_system.results import BatchResult  # noqa: E402
from module_system.state import StateStore  # noqa: E402
from tests.helpers import pg_database  # noqa: E402

PLUGIN = '''
import shutil
from pydantic import BaseModel
from module_system.sources.base import RemoteItem, Source

class Config(BaseModel):
    path: str
    files: int

class LocalCopies(Source):
    """``files`` items, each a copy of the file at ``path``."""
    type_name = "local_copies"
    config_model = Config

    def __init__(self, config):
        self.config = config

    @classmethod
    def from_config(cls, config, context):
        return cls(config)

    def list_items(self):
        for n in range(self.config.files):
            yield RemoteItem(key=f"part-{n:04d}.csv", uri=f"local://{n}", version="v1")

    def fetch(self, item, dest):
        shutil.copyfile(self.config.path, dest)
'''
TABLE_SCHEMA = {
    "fields": [
        {"name": "id", "type": "integer", "constraints": {"required": True, "minimum": 0}},
        {"name": "day", "type": "date"},
        {"name": "amount", "type": "number", "constraints": {"minimum": 0}},
        {"name": "country", "type": "string", "constraints": {"enum": ["FR", "DE", "US", "JP"]}},
        {"name": "memo", "type": "string", "constraints": {"maxLength": 64}},
    ],
    "primaryKey": ["id"],
}


def write_csv(path: Path, megabytes: int) -> int:
    rng = random.Random(7)
    with path.open("w", encoding="ascii", newline="") as out:
        out.write("id,day,amount,country,memo\n")
        n = 0
        while out.tell() < megabytes * 1024 * 1024:
            day = f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
            country = rng.choice(["FR", "DE", "US", "JP"])
            out.write(f"{n},{day},{rng.random() * 1000:.2f},{country},memo {n % 997}\n")
            n += 1
    return path.stat().st_size


def install_plugin(site: Path) -> None:
    """A throwaway distribution whose entry point adds the ``local_copies`` source type,
    on the path of this process and of the worker processes it starts."""
    info = site / "bench_sources-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "bench_sources.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-sources\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[module_system.sources]\nlocal_copies = bench_sources:LocalCopies\n"
    )
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(site), os.environ.get("PYTHONPATH")])
    )


class Bench:
    def __init__(self, tmp: Path, moto: MotoServer, state_url: str) -> None:
        self.tmp, self.moto, self.state_url = tmp, moto, state_url
        self.landing = {"bucket": "bench-landing", "endpoint_url": moto.url}

    def batch(self, name: str, services: dict[str, Any]) -> tuple[Any, Any]:
        registry_path = self.tmp / f"{name}.yaml"
        registry_path.write_text(yaml.safe_dump({"landing": self.landing, "services": services}))
        registry = load_registry(registry_path)
        batch_path = self.tmp / f"{name}.json"
        jobs = [{"job_id": f"{name}-{sid}-{uuid.uuid4().hex[:6]}", "service_id": sid}
                for sid in services]  # fmt: skip
        batch_path.write_text(json.dumps({"description": name, "jobs": jobs}))
        return registry, load_batch(batch_path, registry)

    def run(
        self, executor: JobExecutor, registry: Any, batch: Any, workers: int
    ) -> tuple[float, float]:
        """Run the batch; its wall time, and the CPU time of this process and its children."""
        state = StateStore(self.state_url)
        cpu = cpu_seconds()
        start = time.perf_counter()
        try:
            result: BatchResult = run_batch(registry, batch, state, executor=executor,
                                            max_workers=workers,
                                            options=RunOptions(full_refresh=True))  # fmt: skip
        finally:
            state.close()
        wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        failed = [(j.job_id, j.error) for j in result.jobs if j.status.value != "completed"]
        if failed:
            raise SystemExit(f"jobs failed: {failed[:3]}")
        return wall, cpu


def idle_cpu_rate(seconds: float = 3.0) -> float:
    """CPU seconds per second that this process and its children use doing nothing (Dask's
    heartbeats, the S3 server's loop): taken out of the per-job figures."""
    before = cpu_seconds()
    time.sleep(seconds)
    return (cpu_seconds() - before) / seconds


def cpu_seconds() -> float:
    """CPU time used so far by this process and its living children (workers, S3 server)."""
    total = 0.0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def on_local_cluster(workers: int) -> contextlib.AbstractContextManager[LocalCluster]:
    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                        host="127.0.0.1", dashboard_address=None,
                        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})  # fmt: skip


def cpu_bound(bench: Bench, args: argparse.Namespace) -> None:
    csv_path = bench.tmp / "block.csv"
    size = write_csv(csv_path, args.mb)
    per_service = args.files // args.services
    total_mb = size * per_service * args.services / 1e6
    print(f"\n1. CPU-bound: {per_service * args.services} files of {size / 1e6:.1f} MB "
          f"({total_mb:.0f} MB) across {args.services} services")  # fmt: skip
    for encoding, path_name in (("utf-8", "Arrow fast path"), ("latin-1", "pure-Python path")):
        validation = {"csv": {"table_schema": TABLE_SCHEMA, "encoding": encoding}}
        source = {"path": str(csv_path), "files": per_service}
        service = {"type": "local_copies", "concurrency": 2, "source": source,
                   "validation": validation}  # fmt: skip
        services = {f"cpu{n}": service for n in range(args.services)}
        walls = {}
        for workers in (1, 2):
            with on_local_cluster(workers) as cluster:
                warm_registry, warm_batch = bench.batch("warm", tiny_services(2))
                bench.run(DaskJobExecutor(cluster.scheduler_address), warm_registry, warm_batch, 2)
                registry, batch = bench.batch(f"cpu-{encoding}-{workers}", services)
                walls[workers], _ = bench.run(DaskJobExecutor(cluster.scheduler_address), registry,
                                              batch, args.services)  # fmt: skip
            rate = total_mb / walls[workers]
            print(f"   {path_name:<17} {workers} worker(s): {walls[workers]:6.1f} s  "
                  f"{rate:6.1f} MB/s  load {os.getloadavg()[0]:.1f}")  # fmt: skip
        print(f"   {path_name:<17} throughput ratio 2 vs 1 workers: {walls[1] / walls[2]:.2f}")


def tiny_services(count: int) -> dict[str, Any]:
    return {f"tiny{n:03d}": {"type": "s3", "source": {"bucket": "bench-tiny", "prefix": "t/",
                                                      "endpoint_url": "${S3_ENDPOINT_URL}"}}
            for n in range(count)}  # fmt: skip


def overhead(bench: Bench, args: argparse.Namespace) -> None:
    print(f"\n2. {args.tiny} tiny jobs (one 2-byte file each). CPU: of every process here "
          "(client, scheduler, workers, S3 server), less what they use idle")  # fmt: skip
    registry, _ = bench.batch("tiny", tiny_services(args.tiny))
    for at_once in (1, 2):  # 1: the cost of a job's round trip alone; 2: end to end
        measures = {name: tiny_jobs(bench, registry, name, at_once, args.tiny)
                    for name in ("threads", "dask")}  # fmt: skip
        (wall_t, cpu_t), (wall_d, cpu_d) = measures["threads"], measures["dask"]
        print(f"   {at_once} at once: a Dask task over a pool thread: "
              f"{(wall_d - wall_t) / args.tiny * 1000:+.1f} ms wall and "
              f"{(cpu_d - cpu_t) / args.tiny * 1000:+.1f} ms CPU per job")  # fmt: skip


def tiny_jobs(
    bench: Bench, registry: Any, name: str, at_once: int, count: int
) -> tuple[float, float]:
    """Wall and CPU time of ``count`` tiny jobs on the thread pool or on a local cluster of
    ``at_once`` single-threaded workers, after a warm-up batch."""
    with contextlib.ExitStack() as stack:
        executor: Callable[[], JobExecutor] = functools.partial(ThreadJobExecutor, at_once)
        if name == "dask":
            cluster = stack.enter_context(on_local_cluster(at_once))
            executor = functools.partial(DaskJobExecutor, cluster.scheduler_address)
        warm_registry, warm_batch = bench.batch("warm", tiny_services(4))
        bench.run(executor(), warm_registry, warm_batch, at_once)
        idle = idle_cpu_rate()
        _, batch = bench.batch(f"tiny-{name}-{at_once}", tiny_services(count))
        wall, cpu = bench.run(executor(), registry, batch, at_once)
        cpu -= idle * wall
    print(f"   {at_once} at once, {name:<8} {wall:6.2f} s  {count / wall:5.1f} jobs/s  "
          f"{wall / count * 1000:6.1f} ms/job  CPU {cpu / count * 1000:6.1f} ms/job "
          f"(idle {idle * 1000:.0f} ms/s)  load {os.getloadavg()[0]:.1f}")  # fmt: skip
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--mb", type=int, default=20)
    parser.add_argument("--services", type=int, default=4)
    parser.add_argument("--tiny", type=int, default=200)
    parser.add_argument("--skip-cpu", action="store_true")
    args = parser.parse_args()
    os.environ.update(DEMO_CREDENTIALS)
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} cores")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp_name, MotoServer() as moto, pg_database() as pg:
        tmp = Path(tmp_name)
        install_plugin(tmp / "site")
        os.environ["S3_ENDPOINT_URL"] = moto.url
        s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
        for bucket in ("bench-landing", "bench-tiny"):
            s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket="bench-tiny", Key="t/one.json", Body=b"{}")
        bench = Bench(tmp, moto, pg)
        if not args.skip_cpu:
            cpu_bound(bench, args)
        overhead(bench, args)
    print(f"\nload average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
