"""The demo's dashboard: the command that shows the demo's runs, and ``demo --serve``,
which keeps the dashboard (and the demo's servers, for re-runs) up until Ctrl-C.

The dashboard runs as a child process with the demo's environment (endpoints, demo
credentials), as the demo's batch does.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console

DEFAULT_PORT = 8765


def dashboard_args(workdir: Path, registry: Path, port: int) -> list[str]:
    return [
        "dashboard", "--state-url", f"sqlite:///{workdir / 'state.db'}",
        "--registry", str(registry), "--log-dir", str(workdir / "logs"), "--port", str(port),
    ]  # fmt: skip


def shown_command(args: list[str]) -> str:
    """How a user types it: ``module-system`` when on PATH, else the script beside this
    Python (a venv not activated), else through this Python."""
    beside = Path(sys.executable).parent / "module-system"
    if shutil.which("module-system"):
        program = ["module-system"]
    elif beside.exists():
        program = [str(beside)]
    else:
        program = [sys.executable, "-m", "module_system"]
    return shlex.join([*program, *args])


def print_dashboard_command(console: Console, workdir: Path, registry: Path) -> None:
    command = shown_command(dashboard_args(workdir, registry, DEFAULT_PORT))
    console.print(f"\nSee the runs in the dashboard:\n  {command}", highlight=False, soft_wrap=True)
    console.print("(`module-system demo --serve` keeps the demo's servers up too, for re-runs.)")


def serve_dashboard(
    console: Console, workdir: Path, registry: Path, env: dict[str, str], port: int
) -> int:
    """Serve the dashboard over the demo's state until Ctrl-C; returns its exit status."""
    command = [sys.executable, "-m", "module_system", *dashboard_args(workdir, registry, port)]
    child = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        if not _answers(url, child):
            status = child.poll()
            why = f"it exited with status {status} (see above)" if status is not None else (
                f"nothing answered on port {port}")  # fmt: skip
            console.print(f"demo: the dashboard did not start: {why}")
            return _stop(child) if status is None else status
        console.print(f"\nDashboard: {url}   (Ctrl-C stops it and the demo's servers)")
        return child.wait()
    except KeyboardInterrupt:
        return _stop(child)


def _answers(url: str, child: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        try:
            httpx.get(url, timeout=1)
            return True
        except httpx.HTTPError:
            time.sleep(0.1)
    return False


def _stop(child: subprocess.Popen[bytes]) -> int:
    """Ctrl-C in a terminal reaches the child too; a signal sent to the demo alone is
    passed on. Either way the dashboard gets its graceful shutdown first."""
    if child.poll() is None:
        child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    return 0
