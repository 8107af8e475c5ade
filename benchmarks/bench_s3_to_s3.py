"""S3 → S3 benchmark on local servers: Module System against `rclone copy`.

Lands N small JSON files (default 1,000) and one large NDJSON file (default 1 GB) from a
source bucket to a landing bucket on a local S3 API server (moto), with JSON Schema
validation on, and prints files/s, MB/s, client CPU ms per file and peak RSS. Where
`rclone` is installed it copies the same data between the same servers and the ratio of
wall times is printed.

    .venv/bin/python benchmarks/bench_s3_to_s3.py [--files 1000] [--large-mb 1024]
        [--rounds 5] [--large-rounds 1]

Each side runs as a child process so its CPU time and peak RSS are its own (os.wait4).
Each round runs every contender once, in an order rotated from round to round, into fresh
landing prefixes and state; medians are printed, and ratios are medians of the per-round
ratios (on a shared two-core machine one run is not enough).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.installed import compile_package
from module_system.demo.servers import DEMO_CREDENTIALS, MotoServer

SCHEMA = {
    "type": "object",
    "required": ["id", "day", "amount"],
    "properties": {
        "id": {"type": "integer"},
        "day": {"type": "string", "format": "date"},
        "amount": {"type": "number", "minimum": 0},
        "memo": {"type": "string"},
    },
}


@dataclass
class Measure:
    wall: float
    cpu: float
    max_rss_mb: float


def run_child(command: list[str], env: dict[str, str]) -> Measure:
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        err = process.stderr.read().decode() if process.stderr else ""
        raise SystemExit(f"{command[0]} failed: {err[-2000:]}")
    return Measure(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


RECORD = {"id": 1, "day": "2026-11-28", "amount": 12.5, "memo": "x" * 60}


def seed_small(s3: Any, files: int) -> int:
    body = json.dumps(RECORD).encode()

    def put(n: int) -> None:
        s3.put_object(Bucket="bench-src", Key=f"small/{n:05d}.json", Body=body)

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(files)))
    return files * len(body)


def seed_large(s3: Any, large_mb: int, tmp: Path) -> int:
    line = (json.dumps(RECORD) + "\n").encode()
    big = tmp / "large.ndjson"
    with big.open("wb") as fh:
        chunk = line * (1024 * 1024 // len(line))
        while fh.tell() < large_mb * 1024 * 1024:
            fh.write(chunk)
    size = big.stat().st_size
    config = TransferConfig(multipart_chunksize=64 * 1024 * 1024)
    s3.upload_file(str(big), "bench-src", "large/large.ndjson", Config=config)
    big.unlink()
    return size


def ours(
    server: MotoServer,
    prefix: str,
    dest_bucket: str,
    tmp: Path,
    env: dict[str, str],
    copy: bool = True,
    direct: bool = True,
    copy_min_mb: float = 1.0,
    tag: str = "",
) -> Measure:
    import yaml

    schema = tmp / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    registry = {
        "landing": {"bucket": dest_bucket, "endpoint_url": server.url,
                    "server_side_copy": copy, "server_side_copy_min_mb": copy_min_mb,
                    "prefix": f"copy-{copy}-{copy_min_mb}-direct-{direct}{tag}"},
        "services": {"bench": {
            "type": "s3",
            "source": {"bucket": "bench-src", "prefix": prefix, "endpoint_url": server.url,
                       "include": ["*.json", "*.ndjson"]},
            "validation": {"json_schema": "schema.json"},
            "concurrency": 16,
        }},
    }  # fmt: skip
    (tmp / "registry.yaml").write_text(yaml.safe_dump(registry))
    (tmp / "jobs.json").write_text(
        json.dumps({"jobs": [{"job_id": "bench", "service_id": "bench"}]})
    )
    state = tmp / f"state-{prefix.strip('/')}-{copy}-{copy_min_mb}-{direct}{tag}.db"
    command = [sys.executable, "-m", "module_system", "run", "--batch-file", str(tmp / "jobs.json"),
               "--registry", str(tmp / "registry.yaml"), "--state-url", f"sqlite:///{state}",
               "--monitor-duration", "0", "--log-dir", str(tmp / "logs")]  # fmt: skip
    return run_child(command, {**env, "MODULE_SYSTEM_S3_DIRECT": "1" if direct else "0"})


def rclone(
    server: MotoServer,
    prefix: str,
    dest_bucket: str,
    env: dict[str, str],
    copy: bool = True,
    tag: str = "",
) -> Measure | None:
    binary = shutil.which("rclone")
    if not binary:
        return None
    remote = (f":s3,provider=Other,endpoint='{server.url}',"
              f"access_key_id={DEMO_CREDENTIALS['AWS_ACCESS_KEY_ID']},"
              f"secret_access_key={DEMO_CREDENTIALS['AWS_SECRET_ACCESS_KEY']}:")  # fmt: skip
    # By default rclone copies server-side between buckets of one endpoint; with
    # --disable Copy it moves the bytes through the client.
    source = f"{remote}bench-src/{prefix}"
    target = f"{remote}{dest_bucket}/rclone-{copy}{tag}/{prefix}"
    command = [binary, "copy", source, target, "--transfers", "16", "--checkers", "16",
               "--config", "/dev/null", *([] if copy else ["--disable", "Copy"])]  # fmt: skip
    # rclone's S3 client rejects a custom CA bundle on plain-HTTP endpoints; none is needed.
    env = {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"}
    return run_child(command, env)


def report(name: str, files: int, nbytes: int, rounds: list[dict[str, Measure | None]]) -> None:
    """One line per contender: medians over the rounds; the ratio is the median of the
    per-round ratios of wall times against rclone's default."""
    mb = nbytes / 1024 / 1024
    print(f"\n== {name}: {files} file(s), {mb:.1f} MB; medians of {len(rounds)} round(s)")
    for label in rounds[0]:
        runs = [r[label] for r in rounds]
        if any(m is None for m in runs):
            print(f"{label:<34} not installed (apt-get install rclone)")
            continue
        measured = [m for m in runs if m is not None]
        wall = statistics.median(m.wall for m in measured)
        cpu = statistics.median(m.cpu for m in measured)
        rss = max(m.max_rss_mb for m in measured)
        ratio = ""
        if all(r.get("rclone copy (default)") for r in rounds):
            ratios = [r[label].wall / r["rclone copy (default)"].wall for r in rounds]  # type: ignore[union-attr]
            ratio = f"  {statistics.median(ratios):5.2f}x rclone default"
        print(f"{label:<34}{wall:7.2f} s  {files / wall:8.1f} files/s  "
              f"{mb / wall:7.1f} MB/s  CPU {1000 * cpu / files:8.2f} ms/file  "
              f"peak RSS {rss:6.0f} MB{ratio}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--large-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the small files")
    parser.add_argument("--large-rounds", type=int, default=1, help="rounds of the large file")
    args = parser.parse_args()
    compile_package()  # the CLI child processes start as an installed copy does
    env = {**os.environ, **DEMO_CREDENTIALS, "LOG_LEVEL": "WARNING"}
    os.environ.update(DEMO_CREDENTIALS)
    with tempfile.TemporaryDirectory(prefix="ms-bench-") as tmp_name, MotoServer() as server:
        tmp = Path(tmp_name)
        s3 = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1")
        for bucket in ("bench-src", "bench-ours", "bench-rclone"):
            s3.create_bucket(Bucket=bucket)
        if args.files:  # --files 0: the large file alone
            print(f"seeding {args.files} small files on {server.url} ...")
            nbytes = seed_small(s3, args.files)
            rounds = run_rounds(server, "small/", tmp, env, args.rounds)
            report("small JSON files", args.files, nbytes, rounds)
        if args.large_mb:
            print(f"seeding one {args.large_mb} MB NDJSON file ...")
            nbytes = seed_large(s3, args.large_mb, tmp)
            rounds = run_rounds(server, "large/", tmp, env, args.large_rounds)
            report("one large NDJSON file", 1, nbytes, rounds)


def run_rounds(
    server: MotoServer, prefix: str, tmp: Path, env: dict[str, str], rounds: int
) -> list[dict[str, Measure | None]]:
    results = []
    for number in range(rounds):
        runs = contenders(server, prefix, tmp, env, f"-r{number}")
        order = list(runs)
        shift = number % len(order)
        measured = {label: runs[label]() for label in order[shift:] + order[:shift]}
        results.append({label: measured[label] for label in order})
    return results


def contenders(
    server: MotoServer, prefix: str, tmp: Path, env: dict[str, str], tag: str
) -> dict[str, Callable[[], Measure | None]]:
    def mine(**options: Any) -> Callable[[], Measure]:
        return lambda: ours(server, prefix, "bench-ours", tmp, env, tag=tag, **options)

    def theirs(copy: bool) -> Callable[[], Measure | None]:
        return lambda: rclone(server, prefix, "bench-rclone", env, copy=copy, tag=tag)

    return {
        # Defaults: a file under 1 MB is uploaded (one request, like a copy), bigger ones copied.
        "module-system (defaults)": mine(),
        "module-system (copy every file)": mine(copy_min_mb=0),
        "module-system (upload every file)": mine(copy=False),
        # Before the direct path (module_system/aws_direct.py): every request through botocore.
        "  defaults, botocore only": mine(direct=False),
        "rclone copy (default)": theirs(copy=True),
        "rclone copy --disable Copy": theirs(copy=False),
    }


if __name__ == "__main__":
    main()
