"""The demo: local servers with sample data, the demo registry and batch (in ``data/``,
shipped with the package; the checkout's ``project_registry.yaml`` links to them).

Each demo part starts one kind of source (an S3 bucket, and later FTP, API and web
servers) and exports the environment variables the registry refers to.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

from module_system.demo.context import DemoContext
from module_system.demo.dashboard import DEFAULT_PORT, print_dashboard_command, serve_dashboard
from module_system.demo.servers import DEMO_CREDENTIALS, MotoServer

DATA = Path(__file__).resolve().parent / "data"  # registry, batch, schemas
DEMO_PARTS = [
    "module_system.demo.s3_data:S3DemoData",
    "module_system.demo.web_data:WebDemoData",
    "module_system.demo.api_data:ApiDemoData",
    "module_system.demo.ftp_data:FtpDemoData",
]
LANDING_BUCKET = "module-system-landing"


def _load_part(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)()


def run_demo(workdir: Path | None = None, serve: bool = False, port: int = DEFAULT_PORT) -> int:
    """Run the demo batch against local servers; return the CLI's exit status. With
    ``serve``, keep the servers and the dashboard up afterwards, until Ctrl-C."""
    console = Console()
    registry, batch = DATA / "project_registry.yaml", DATA / "demo_batch_jobs.json"
    workdir = workdir or Path(tempfile.mkdtemp(prefix="module-system-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.update(DEMO_CREDENTIALS)
    with MotoServer(log_path=workdir / "moto.log") as s3_server:
        ctx = DemoContext(workdir, s3_server.url, {"S3_ENDPOINT_URL": s3_server.url})
        ctx.s3_client().create_bucket(Bucket=LANDING_BUCKET)
        parts = [_load_part(target) for target in DEMO_PARTS]
        try:
            for part in parts:
                console.print(f"demo: starting the {part.name} source")
                part.start(ctx)
            status = _run_batch(console, registry, batch, workdir, ctx.env)
            _show_landing(console, ctx)
            if serve:
                serve_dashboard(console, workdir, registry, ctx.env, port)
        finally:
            for part in parts:
                part.stop()
    console.print(f"\nLogs: {workdir / 'logs'}   Report: {workdir / 'report.json'}")
    if not serve:
        print_dashboard_command(console, workdir, registry)
    return status


def _run_batch(
    console: Console, registry: Path, batch: Path, workdir: Path, env: dict[str, str]
) -> int:
    command = [
        sys.executable, "-m", "module_system", "run",
        "--batch-file", str(batch), "--registry", str(registry),
        "--max-workers", "4", "--monitor-duration", "30",
        "--state-url", f"sqlite:///{workdir / 'state.db'}",
        "--report", str(workdir / "report.json"), "--log-dir", str(workdir / "logs"),
    ]  # fmt: skip
    console.print("demo: " + " ".join(command[1:]), highlight=False)
    return subprocess.call(command, env={**os.environ, **env}, cwd=workdir)


def _show_landing(console: Console, ctx: DemoContext) -> None:
    s3 = ctx.s3_client()
    console.print(f"\nLanded in s3://{LANDING_BUCKET} (endpoint {ctx.s3_endpoint}):")
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=LANDING_BUCKET):
        for obj in page.get("Contents", []):
            console.print(f"  {obj['Size']:>8}  {obj['Key']}", highlight=False)
