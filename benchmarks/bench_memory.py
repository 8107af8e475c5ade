"""Peak RSS and time per item of a job whose listed items are all unchanged.

A synthetic source type, registered through the ``module_system.sources`` entry point of
a throwaway distribution put on ``sys.path``, lists N items; the state store is pre-filled
with the same N rows, so every item is skipped as unchanged. Each job runs in its own
process (``module-system run``), measured by the parent through ``psutil``. The landing
bucket is moto's server on loopback. Run on SQLite and on the machine's PostgreSQL.

    python benchmarks/bench_memory.py [--sizes 10000 100000 1000000] [--stores sqlite postgresql]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
import psycopg
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.installed import compile_package  # noqa: E402
from module_system.demo.servers import DEMO_CREDENTIALS, MotoServer  # noqa: E402
from module_system.state import StateStore  # noqa: E402
from tests.helpers import pg_database  # noqa: E402

SOURCE = """
from module_system.sources.base import RemoteItem, Source
from pydantic import BaseModel

class Config(BaseModel):
    items: int

class SyntheticSource(Source):
    type_name = "synthetic"
    config_model = Config

    def __init__(self, config):
        self.config = config

    @classmethod
    def from_config(cls, config, context):
        return cls(config)

    def list_items(self):
        for n in range(self.config.items):
            key = f"part-{n // 1000:04d}/item-{n:08d}.json"
            yield RemoteItem(key=key, uri=f"synthetic://{key}", size=2, version="v1")

    def fetch(self, item, dest):
        dest.write_bytes(b"{}")
"""


def make_plugin(folder: Path) -> None:
    (folder / "synthetic_source.py").write_text(SOURCE)
    info = folder / "synthetic_source-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: synthetic-source\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[module_system.sources]\nsynthetic = synthetic_source:SyntheticSource\n"
    )


def prefill(url: str, n: int, prefix: str) -> None:
    store = StateStore(url)  # creates the tables
    rows = (
        ("svc", f"part-{i // 1000:04d}/item-{i:08d}.json", f"synthetic://{i}", "v1", 2,
         "0" * 64, "valid", f"{prefix}item-{i:08d}.json", "r0", "j0")
        for i in range(n)
    )  # fmt: skip
    columns = ("service_id, item_key, source_uri, version, size, sha256, verdict, landing_key, "
               "run_id, job_id, landed_at")  # fmt: skip
    if url.startswith("sqlite"):
        raw = store.engine.raw_connection()
        raw.executemany(f"INSERT INTO ms_files ({columns}) VALUES (?,?,?,?,?,?,?,?,?,?,"
                        "CURRENT_TIMESTAMP)", rows)  # fmt: skip
        raw.commit()
        raw.close()
    else:
        with (
            psycopg.connect(url) as conn,
            conn.cursor() as cur,
            cur.copy(f"COPY ms_files ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row((*row, "2026-01-01T00:00:00Z"))
    store.close()


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    start = time.perf_counter()
    proc = psutil.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.read().decode() if proc.stderr else "run failed")
    return peak / 2**20, time.perf_counter() - start


def run_one(store: str, n: int, moto: MotoServer, work: Path) -> dict[str, float]:
    import boto3

    bucket = f"landing-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1",
                      aws_access_key_id="x", aws_secret_access_key="x")  # fmt: skip
    s3.create_bucket(Bucket=bucket)
    with contextlib.ExitStack() as stack:
        if store == "sqlite":
            url = f"sqlite:///{work / f'state-{n}.db'}"
        else:
            url = stack.enter_context(pg_database())
        return run_job(url, n, bucket, moto, work)


def run_job(url: str, n: int, bucket: str, moto: MotoServer, work: Path) -> dict[str, float]:
    prefill(url, n, "data/synthetic/svc/validated/")
    registry = work / "registry.yaml"
    registry.write_text(yaml.safe_dump({
        "landing": {"bucket": bucket, "endpoint_url": moto.url},
        "services": {"svc": {"type": "synthetic", "source": {"items": n}}},
    }))  # fmt: skip
    batch = work / "batch.json"
    batch.write_text(json.dumps({"jobs": [{"job_id": f"mem-{n}", "service_id": "svc"}]}))
    env = {**os.environ, **DEMO_CREDENTIALS,
           "PYTHONPATH": os.pathsep.join([str(work / "plugin"), str(ROOT)])}  # fmt: skip
    argv = [sys.executable, "-m", "module_system", "run", "--batch-file", str(batch),
            "--registry", str(registry), "--state-url", url, "--log-dir", str(work / "logs"),
            "--report", str(work / "report.json")]  # fmt: skip
    peak, seconds = measure(argv, env)
    counts = json.loads((work / "report.json").read_text())["jobs"][0]["counts"]
    assert counts["skipped"] == n, counts
    return {"peak_rss_mb": peak, "seconds": seconds, "us_per_item": seconds / n * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--stores", nargs="+", default=["sqlite", "postgresql"])
    args = parser.parse_args()
    compile_package()  # the CLI child processes start as an installed copy does
    with tempfile.TemporaryDirectory() as tmp, MotoServer() as moto:
        work = Path(tmp)
        (work / "plugin").mkdir()
        make_plugin(work / "plugin")
        print(f"{'store':<11}{'items':>10}{'peak RSS MB':>14}{'seconds':>10}{'us/item':>10}")
        for store in args.stores:
            for n in args.sizes:
                r = run_one(store, n, moto, work)
                print(f"{store:<11}{n:>10,}{r['peak_rss_mb']:>14.0f}{r['seconds']:>10.1f}"
                      f"{r['us_per_item']:>10.0f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
