"""The end-of-run summary table and the ``--report`` JSON file."""

from __future__ import annotations

from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from module_system.observability.redaction import redact
from module_system.orchestrator.units import human_bytes
from module_system.results import BatchResult, JobStatus

STATUS_STYLE = {
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "yellow",
    JobStatus.TIMED_OUT: "red",
}


def summary_table(result: BatchResult) -> Table:
    table = Table(title=f"Run {result.run_id}", title_justify="left")
    for column in ("job", "service", "status", "listed", "valid", "quarantined",
                   "unchanged", "failed", "bytes", "seconds", "error"):  # fmt: skip
        table.add_column(
            column,
            justify="right" if column not in ("job", "service", "status", "error") else "left",
        )
    for job in result.jobs:
        c = job.counts
        style = STATUS_STYLE.get(job.status, "")
        table.add_row(
            job.job_id, job.service_id, f"[{style}]{job.status.value}[/]",
            str(c.listed), str(c.valid), str(c.invalid), str(c.skipped), str(c.failed),
            human_bytes(c.bytes), f"{job.duration:.1f}", redact(job.error or ""),
        )  # fmt: skip
    return table


def print_summary(result: BatchResult, console: Console) -> None:
    console.print(summary_table(result))
    statuses = ", ".join(f"{n} {s}" for s, n in result.status_counts().items() if n)
    totals = result.totals
    console.print(
        f"{len(result.jobs)} jobs: {statuses}. Files: {totals.valid} landed, "
        f"{totals.invalid} quarantined, {totals.skipped} unchanged, {totals.ignored} ignored, "
        f"{totals.failed} failed; "
        f"{human_bytes(totals.bytes)}.",
        highlight=False,
    )


def write_report(result: BatchResult, path: Path) -> None:
    """Write the results as JSON (secrets redacted)."""
    text = orjson.dumps(result.as_dict(), option=orjson.OPT_INDENT_2).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(redact(text) + "\n", encoding="utf-8")
