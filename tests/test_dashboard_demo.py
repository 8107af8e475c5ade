"""``module-system demo --serve``: the demo's servers and the dashboard stay up until
Ctrl-C, and the dashboard shows the demo's run; without --serve the demo prints the
dashboard command for its state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
from rich.console import Console

from module_system.demo.dashboard import print_dashboard_command
from module_system.demo.servers import free_port

CHECKOUT = Path(__file__).resolve().parents[1]


def test_demo_serve_keeps_the_dashboard_up_until_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MODULE_SYSTEM_STATE_URL"}
    command = [sys.executable, "-m", "module_system", "demo", "--serve", "--workdir",
               str(tmp_path), "--port", str(port)]  # fmt: skip
    demo = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    output: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert demo.stdout is not None
        for line in demo.stdout:
            output.append(line)
            if line.startswith(f"Dashboard: http://127.0.0.1:{port}/"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(240), "".join(output)[-4000:]
        runs = httpx.get(f"http://127.0.0.1:{port}/api/runs").json()["runs"]
        assert [r["status"] for r in runs] == ["completed"]
        assert runs[0]["files"]["landed"] > 0 and runs[0]["files"]["quarantined"] > 0
        services = httpx.get(f"http://127.0.0.1:{port}/services").text
        assert "s3_financial_data" in services and "ftp_sales" in services
        assert demo.poll() is None  # still serving
    finally:
        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends
        status = demo.wait(timeout=60)
        reader.join(timeout=10)
    assert status == 0, "".join(output)[-4000:]
    assert "Logs: " in "".join(output)


def test_demo_prints_the_dashboard_command_for_its_state(tmp_path: Path) -> None:
    console = Console(record=True, width=400)
    registry = CHECKOUT / "module_system" / "demo" / "data" / "project_registry.yaml"
    print_dashboard_command(console, tmp_path, registry)
    text = console.export_text()
    assert (
        f"dashboard --state-url sqlite:///{tmp_path / 'state.db'} --registry {registry} "
        f"--log-dir {tmp_path / 'logs'} --port 8765"
    ) in text
    assert "demo --serve" in text
