"""The README's first command: the demo lands files from every demo source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]


def test_demo_lands_every_service(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MODULE_SYSTEM_STATE_URL"}
    done = subprocess.run(
        [sys.executable, "test_system.py", "--workdir", str(tmp_path)],
        cwd=CHECKOUT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads((tmp_path / "report.json").read_text())
    batch = json.loads((CHECKOUT / "demo_batch_jobs.json").read_text())
    assert [j["job_id"] for j in report["jobs"]] == [j["job_id"] for j in batch["jobs"]]
    for job in report["jobs"]:
        assert job["status"] == "completed", job
        assert job["counts"]["valid"] > 0, job
    assert "Landed in s3://module-system-landing" in done.stdout
    assert "data/s3/s3_financial_data/validated/" in done.stdout
    assert "quarantine/" in done.stdout and ".error.json" in done.stdout
    assert (tmp_path / "logs" / "system_orchestrator_job_executor.log").exists()
