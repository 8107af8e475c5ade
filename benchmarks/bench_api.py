"""API source benchmark: 50,000 records, 100 per page, from a local paginated API.

Compares the wall time of the full job (fetch every page, validate each record against a
JSON Schema, land each page in an S3 API server, record state, write the manifest) with a
bare httpx loop that only reads the same pages. Target: the job within 1.5x the loop,
which needs page N+1 fetched while page N validates and uploads.

The API runs in its own process (uvicorn), so it does not share the client's GIL.

    .venv/bin/python benchmarks/bench_api.py [--records 50000] [--per-page 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
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
from tests.conftest import write_batch, write_registry  # noqa: E402

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


def bare_loop(url: str, pages: int) -> float:
    started = time.perf_counter()
    with httpx.Client() as client:
        for number in range(1, pages + 1):
            response = client.get(url + "/observations", params={"page": number})
            response.raise_for_status()
            _ = response.content
    return time.perf_counter() - started


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


def full_job(url: str, s3_url: str, work: Path, round_no: int) -> tuple[float, Any]:
    landing = {"bucket": "bench-landing", "endpoint_url": s3_url, "region": "us-east-1"}
    source = {
        "url": url + "/observations",
        "pagination": {"type": "page_number", "total_path": "total_pages"},
        "records_path": "data.items",
    }
    services = {"bench_api": {"type": "api", "source": source, "concurrency": 8,
                              "validation": {"json_schema": RECORD_SCHEMA}}}  # fmt: skip
    registry = load_registry(write_registry(work / "registry.yaml", landing, services))
    batch = load_batch(write_batch(work / "batch.json", [(f"bench_{round_no}", "bench_api")]))
    state = StateStore(f"sqlite:///{work / f'state-{round_no}.db'}")
    started = time.perf_counter()
    result = run_batch(registry, batch, state)
    return time.perf_counter() - started, result.jobs[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--per-page", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.records, args.per_page)
        return
    pages = -(-args.records // args.per_page)
    os.environ.update(DEMO_CREDENTIALS)
    api, url = start_api(args.records, args.per_page)
    try:
        with MotoServer() as s3_server, tempfile.TemporaryDirectory() as tmp:
            s3 = boto3.client("s3", endpoint_url=s3_server.url, region_name="us-east-1")
            s3.create_bucket(Bucket="bench-landing")
            bare_loop(url, 20)  # warm up both servers' code paths
            loops, jobs, floors = [], [], []
            for round_no in range(args.rounds):
                loops.append(bare_loop(url, pages))
                floors.append(landing_floor(s3, url, pages))
                seconds, job = full_job(url, s3_server.url, Path(tmp), round_no)
                assert job.status == "completed", job.error
                assert job.counts.valid == pages, job.counts
                jobs.append(seconds)
    finally:
        api.terminate()
        api.wait(timeout=10)
    loop, job, floor = (statistics.median(x) for x in (loops, jobs, floors))
    print(f"{args.records} records, {pages} pages of {args.per_page}; median of {args.rounds}; "
          f"{os.cpu_count()} CPUs shared by client, API and S3 servers")  # fmt: skip
    print(f"bare httpx loop: {loop:.2f} s  ({pages / loop:.0f} pages/s)")
    print(f"landing floor:   {floor:.2f} s  ({pages} bare PUTs into the S3 server, 8 threads)")
    print(f"full job:        {job:.2f} s  ({pages / job:.0f} pages/s, validated and landed)")
    print(
        f"ratio:           {job / loop:.2f}x the bare loop (target <= 1.5x); "
        f"{job / max(loop, floor):.2f}x the slower of loop and landing floor"
    )


if __name__ == "__main__":
    main()
