"""FTP → S3 benchmark on local servers: Module System against `rclone copy`.

Serves N small CSV files (default 1,000 of ~20 KB) and one large CSV (default 1 GB) from a
local FTP server (pyftpdlib, in its own process) and lands them in a bucket on a local S3
API server (moto) — we with CSV validation against a Table Schema on, rclone copying the
same files between the same servers. Prints wall times, their ratio, peak RSS, and the
CSV validator's speed alone on the large file (one core, CPU time).

    .venv/bin/python benchmarks/bench_ftp_to_s3.py [--files 1000] [--large-mb 1024] [--rounds 3]

Each side runs as a child process so its CPU time and peak RSS are its own (os.wait4). The
small files run ``--rounds`` times, the two sides in turns (rotated), into fresh prefixes;
medians and the median of the per-round ratios are printed (one run on a shared two-core
machine varies by ±10 %). The large file runs once.
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
from pathlib import Path
from typing import Any

import boto3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_s3_to_s3 import Measure, run_child
from benchmarks.installed import compile_package
from module_system.demo.servers import DEMO_CREDENTIALS, MotoServer, free_port

USER, PASSWORD = "bench", "bench-password"
SCHEMA: dict[str, Any] = {
    "fields": [
        {"name": "id", "type": "integer", "constraints": {"required": True}},
        {"name": "amount", "type": "number", "constraints": {"minimum": 0}},
        {"name": "day", "type": "date"},
        {"name": "memo", "type": "string", "constraints": {"maxLength": 80}},
    ]
}
HEADER = "id,amount,day,memo\n"


def rows(start: int, count: int) -> str:
    return "".join(
        f"{i},{(i * 37) % 10000 / 100:.2f},2026-{i % 12 + 1:02d}-{i % 28 + 1:02d},"
        f"order {i} shipped to customer {i % 977}\n"
        for i in range(start, start + count)
    )


def seed(root: Path, files: int, large_mb: int) -> tuple[int, int]:
    small = root / "small"
    small.mkdir(parents=True)
    per_file = 20 * 1024 // len(rows(10**6, 1))
    for n in range(files):
        (small / f"orders_{n:05d}.csv").write_text(HEADER + rows(n * per_file, per_file))
    small_bytes = sum(p.stat().st_size for p in small.iterdir())
    large = root / "large"
    large.mkdir()
    target = large_mb * 1024 * 1024
    with (large / "orders_large.csv").open("w") as out:
        out.write(HEADER)
        start = 0
        while out.tell() < target:
            out.write(rows(start, 20_000))
            start += 20_000
    return small_bytes, (large / "orders_large.csv").stat().st_size


class FtpProcess:
    """pyftpdlib's own server (``python -m pyftpdlib``) in a child process."""

    def __init__(self, root: Path) -> None:
        self.root, self.port = root, free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> FtpProcess:
        command = [sys.executable, "-m", "pyftpdlib", "-i", "127.0.0.1", "-p", str(self.port),
                   "-d", str(self.root), "-u", USER, "-P", PASSWORD]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        import socket

        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise SystemExit("the FTP server did not start")

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)


def ours(
    ftp: FtpProcess, s3_url: str, folder: str, tmp: Path, env: dict[str, str], tag: str = "r0"
) -> Measure:
    import yaml

    work = tmp / f"ours-{folder}-{tag}"
    work.mkdir()
    (work / "sales.json").write_text(json.dumps(SCHEMA))
    registry = {
        "landing": {"bucket": "bench-ours", "endpoint_url": s3_url, "prefix": tag},
        "services": {"bench": {
            "type": "ftp",
            "source": {"host": "127.0.0.1", "port": ftp.port, "username": USER,
                       "password": PASSWORD, "path": f"/{folder}", "include": ["*.csv"],
                       "max_connections": 8},
            "validation": {"csv": {"table_schema": "sales.json"}},
            "concurrency": 16,
        }},
    }  # fmt: skip
    (work / "registry.yaml").write_text(yaml.safe_dump(registry))
    (work / "jobs.json").write_text(json.dumps({"jobs": [{"job_id": "b", "service_id": "bench"}]}))
    command = [sys.executable, "-m", "module_system", "run",
               "--batch-file", str(work / "jobs.json"),
               "--registry", str(work / "registry.yaml"), "--state-url",
               f"sqlite:///{work / 'state.db'}", "--monitor-duration", "0",
               "--log-dir", str(work / "logs"), "--report", str(work / "report.json")]  # fmt: skip
    measure = run_child(command, env)
    job = json.loads((work / "report.json").read_text())["jobs"][0]
    if job["status"] != "completed" or job["counts"]["valid"] != job["counts"]["listed"]:
        raise SystemExit(f"our run did not land everything valid: {job}")
    return measure


def rclone(
    ftp: FtpProcess, s3_url: str, folder: str, env: dict[str, str], tag: str = "r0"
) -> Measure | None:
    binary = shutil.which("rclone")
    if not binary:
        return None
    obscured = subprocess.run([binary, "obscure", PASSWORD], capture_output=True, text=True,
                              check=True).stdout.strip()  # fmt: skip
    source = f":ftp,host=127.0.0.1,port={ftp.port},user={USER},pass={obscured}:{folder}"
    target = (f":s3,provider=Other,endpoint='{s3_url}',"
              f"access_key_id={DEMO_CREDENTIALS['AWS_ACCESS_KEY_ID']},"
              f"secret_access_key={DEMO_CREDENTIALS['AWS_SECRET_ACCESS_KEY']}:"
              f"bench-rclone/{tag}/{folder}")  # fmt: skip
    command = [binary, "copy", source, target, "--transfers", "16", "--checkers", "16",
               "--config", "/dev/null"]  # fmt: skip
    return run_child(command, {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"})


def validator_speed(path: Path) -> float:
    """MB/s of the CSV validator alone on one core (CPU time of this process)."""
    from module_system.validation.csv import CsvValidator

    validator = CsvValidator(CsvValidator.parse_options({"table_schema": SCHEMA}, path.parent))
    start = time.process_time()
    verdict = validator.validate(path, path.name)
    elapsed = time.process_time() - start
    if not verdict.valid:
        raise SystemExit(f"the large file is not valid: {verdict.as_dict()['errors'][:3]}")
    return path.stat().st_size / 1024 / 1024 / elapsed


def report(name: str, files: int, nbytes: int, mine: Measure, theirs: Measure | None) -> None:
    mb = nbytes / 1024 / 1024
    print(f"\n== {name}: {files} file(s), {mb:.1f} MB")
    print(f"module-system (validating): {mine.wall:7.2f} s  {mb / mine.wall:7.1f} MB/s  "
          f"CPU {mine.cpu:6.1f} s  peak RSS {mine.max_rss_mb:6.0f} MB")  # fmt: skip
    if theirs:
        print(f"rclone copy:                {theirs.wall:7.2f} s  {mb / theirs.wall:7.1f} MB/s  "
              f"CPU {theirs.cpu:6.1f} s  peak RSS {theirs.max_rss_mb:6.0f} MB")  # fmt: skip
        print(f"ratio (ours / rclone wall time): {mine.wall / theirs.wall:.2f}")
    else:
        print("rclone not installed: no comparison (apt-get install rclone)")


def small_rounds(
    ftp: FtpProcess, s3_url: str, tmp: Path, env: dict[str, str], rounds: int
) -> tuple[Measure, Measure | None]:
    """The small files ``rounds`` times, the two sides in turns (rotated); the medians, with
    the median of the per-round ratios printed."""
    mine: list[Measure] = []
    theirs: list[Measure | None] = []
    for number in range(rounds):
        tag = f"r{number}"
        sides = ["ours", "rclone"] if number % 2 == 0 else ["rclone", "ours"]
        for side in sides:
            if side == "ours":
                mine.append(ours(ftp, s3_url, "small", tmp, env, tag))
            else:
                theirs.append(rclone(ftp, s3_url, "small", env, tag))
    measured = [m for m in theirs if m is not None]
    if len(measured) == len(mine):
        ratios = [m.wall / r.wall for m, r in zip(mine, measured, strict=True)]
        print(f"small files, {rounds} rounds: ratios {', '.join(f'{x:.2f}' for x in ratios)}; "
              f"median {statistics.median(ratios):.2f}")  # fmt: skip
    return _median(mine), _median(measured) if measured else None


def _median(runs: list[Measure]) -> Measure:
    return Measure(statistics.median(m.wall for m in runs), statistics.median(m.cpu for m in runs),
                   max(m.max_rss_mb for m in runs))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--large-mb", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the small files")
    args = parser.parse_args()
    compile_package()  # the CLI child processes start as an installed copy does
    env = {**os.environ, **DEMO_CREDENTIALS, "LOG_LEVEL": "WARNING"}
    os.environ.update(DEMO_CREDENTIALS)
    with tempfile.TemporaryDirectory(prefix="ms-ftp-bench-") as tmp_name:
        tmp = Path(tmp_name)
        print(f"writing {args.files} small CSV files and one {args.large_mb} MB CSV ...")
        small_bytes, large_bytes = seed(tmp / "ftp", args.files, args.large_mb)
        with MotoServer() as s3_server, FtpProcess(tmp / "ftp") as ftp:
            s3 = boto3.client("s3", endpoint_url=s3_server.url, region_name="us-east-1")
            for bucket in ("bench-ours", "bench-rclone"):
                s3.create_bucket(Bucket=bucket)
            if args.files:  # --files 0: the large file alone
                mine, theirs = small_rounds(ftp, s3_server.url, tmp, env, args.rounds)
                report(f"small CSV files (medians of {args.rounds})", args.files, small_bytes,
                       mine, theirs)  # fmt: skip
            if args.large_mb:
                mine = ours(ftp, s3_server.url, "large", tmp, env)
                theirs = rclone(ftp, s3_server.url, "large", env)
                report("one large CSV file", 1, large_bytes, mine, theirs)
        if args.large_mb:
            speed = validator_speed(tmp / "ftp" / "large" / "orders_large.csv")
            print(f"\nCSV validation alone (one core): {speed:.1f} MB/s")


if __name__ == "__main__":
    main()
