"""API source benchmark: 50,000 records, 100 per page, from a local paginated API.

Compares the wall time of the full job (fetch every page, validate each record against a
JSON Schema, land in an S3 API server, record state, write the manifest) with a bare httpx
loop that only reads the same pages: one object a page (``batch_pages: 1``) and 100 pages
an NDJSON object (``batch_pages: 100``). Target with batches of 100: the job within 1.2x
the loop.

The API and the S3 server run in processes of their own (uvicorn, moto), so the client's
CPU time (``process_time`` of this process while the job runs) is ours alone. Each round
runs the loop and the jobs one after the other, so a round's ratios share the machine's
load; the medians over the rounds are reported, with the load average.

    .venv/bin/python benchmarks/bench_api.py [--records 50000] [--per-page 100] [--rounds 5]
        [--batch-pages 1 100] [--floor]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from module_system.config import load_batch, load_registry  # noqa: E402
from module_system.demo.servers import DEMO_CREDENTIALS, MotoServer, free_port  # noqa: E402
from module_system.orchestrator.batch import run_batch  # noqa: E402
from module_system.state import StateStore  # noqa: E402
from tests.helpers import write_batch, write_registry  # noqa: E402

RECORD_SCHEMA = {
    "type": "object",
    "required": ["id", "station", "observed_at", "temperature_c"],
    "properties": {
        "id": {"type": "integer"},
        "station": {"type": "string", "pattern": "^ST[0-9]{3}$"},
        "observed_at": {"type": "string", "format": "date-time"},
        "temperature_c": {"type": "number"},
        "humidity_pct": {"type": "number", "minimum": 0, "maximum": 100},
    },
}


def serve(port: int, records: int, per_page: int) -> None:
    """The API process: every page serialised once up front, then served as bytes."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    rows = [
        {"id": n, "station": f"ST{n % 50:03d}", "observed_at": f"2026-11-27T{n % 24:02d}:00:00Z",
         "temperature_c": (n % 400) / 10 - 5, "humidity_pct": n % 100}
        for n in range(records)
    ]  # fmt: skip
    total = -(-records // per_page)
    pages = [
        orjson.dumps({"data": {"items": rows[i * per_page : (i + 1) * per_page]},
                      "total_pages": total})
        for i in range(total + 1)
    ]  # fmt: skip

    def page(request: Request) -> Response:
        number = int(request.query_params.get("page", "1"))
        return Response(pages[min(number, total + 1) - 1], media_type="application/json")

    app = Starlette(routes=[Route("/observations", page)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start_api(records: int, per_page: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    args = [sys.executable, __file__, "--serve", str(port)]
    process = subprocess.Popen([*args, "--records", str(records), "--per-page", str(per_page)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/observations", timeout=1)
            return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the benchmark API did not start")


@dataclass
class Timing:
    wall: float
    cpu: float  # this process's CPU time: the client alone (the servers run elsewhere)


@contextmanager
def timed(into: list[Timing]) -> Iterator[None]:
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into.append(Timing(time.perf_counter() - wall, time.process_time() - cpu))


def bare_loop(url: str, pages: int) -> None:
    with httpx.Client() as client:
        for number in range(1, pages + 1):
            response = client.get(url + "/observations", params={"page": number})
            response.raise_for_status()
            _ = response.content


def landing_floor(s3: Any, url: str, pages: int, threads: int = 8) -> float:
    """The same pages PUT into the landing server by ``threads`` threads, nothing else: the
    least any job that lands them can take on this machine."""
    with httpx.Client() as client:
        bodies = [client.get(url + "/observations", params={"page": n}).content
                  for n in range(1, pages + 1)]  # fmt: skip
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        keys = (f"floor/page-{n:06d}.json" for n in range(pages))
        list(pool.map(lambda kb: s3.put_object(Bucket="bench-landing", Key=kb[0], Body=kb[1]),
                      zip(keys, bodies, strict=True)))  # fmt: skip
    return time.perf_counter() - started


def full_job(
    url: str, s3_url: str, work: Path, name: str, batch_pages: int, into: list[Timing]
) -> Any:
    """One job over every page; only the batch run is timed (not writing its registry)."""
    landing = {"bucket": "bench-landing", "endpoint_url": s3_url, "region": "us-east-1"}
    source = {
        "url": url + "/observations",
        "pagination": {"type": "page_number", "total_path": "total_pages"},
        "records_path": "data.items",
        "batch_pages": batch_pages,
    }
    services = {"bench_api": {"type": "api", "source": source, "concurrency": 8,
                              "validation": {"json_schema": RECORD_SCHEMA}}}  # fmt: skip
    registry = load_registry(write_registry(work / "registry.yaml", landing, services))
    batch = load_batch(write_batch(work / "batch.json", [(name, "bench_api")]))
    state = StateStore(f"sqlite:///{work / f'state-{name}.db'}")
    with timed(into):
        return run_batch(registry, batch, state).jobs[0]


def run_rounds(args: argparse.Namespace, url: str, s3_url: str, work: Path) -> dict[str, Any]:
    pages = -(-args.records // args.per_page)
    loops: list[Timing] = []
    jobs: dict[int, list[Timing]] = {n: [] for n in args.batch_pages}
    for round_no in range(args.rounds):
        with timed(loops):
            bare_loop(url, pages)
        for n in args.batch_pages:
            job = full_job(url, s3_url, work, f"bench_{round_no}_{n}", n, jobs[n])
            assert job.status == "completed", job.error
            assert job.counts.valid == -(-pages // n), job.counts
    return {"loops": loops, "jobs": jobs}


def report(args: argparse.Namespace, timings: dict[str, Any], loads: list[float]) -> None:
    pages = -(-args.records // args.per_page)
    loops: list[Timing] = timings["loops"]
    loop = statistics.median(t.wall for t in loops)
    print(f"{args.records} records, {pages} pages of {args.per_page}; median of {args.rounds} "
          f"rounds; {os.cpu_count()} CPUs shared by client, API and S3 servers; load average "
          f"(1 min) {loads[0]:.1f} before, {loads[1]:.1f} after")  # fmt: skip
    print(
        f"bare httpx loop:     {loop:6.2f} s wall, "
        f"{statistics.median(t.cpu for t in loops):5.2f} s CPU"
    )
    for n, runs in timings["jobs"].items():
        wall = statistics.median(t.wall for t in runs)
        cpu = statistics.median(t.cpu for t in runs)
        paired = statistics.median(t.wall / lp.wall for t, lp in zip(runs, loops, strict=True))
        print(
            f"job, batch_pages {n:<3}: {wall:6.2f} s wall, {cpu:5.2f} s CPU; "
            f"{wall / loop:.2f}x the loop (median of per-round ratios {paired:.2f}x); "
            f"rounds: {', '.join(f'{t.wall:.2f}' for t in runs)} s"
        )
    print("target: batch_pages 100 within 1.2x the bare loop, validation on")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--per-page", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-pages", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--floor", action="store_true", help="also time bare PUTs of the pages")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.records, args.per_page)
        return
    pages = -(-args.records // args.per_page)
    os.environ.update(DEMO_CREDENTIALS)
    api, url = start_api(args.records, args.per_page)
    loads = [os.getloadavg()[0]]
    try:
        with MotoServer() as s3_server, tempfile.TemporaryDirectory() as tmp:
            s3 = boto3.client("s3", endpoint_url=s3_server.url, region_name="us-east-1")
            s3.create_bucket(Bucket="bench-landing")
            bare_loop(url, 20)  # warm up both servers' code paths
            if args.floor:
                floor = landing_floor(s3, url, pages)
                print(f"landing floor: {floor:.2f} s ({pages} bare PUTs, 8 threads)")
            timings = run_rounds(args, url, s3_server.url, Path(tmp))
    finally:
        api.terminate()
        api.wait(timeout=10)
    loads.append(os.getloadavg()[0])
    report(args, timings, loads)


if __name__ == "__main__":
    main()
