"""Live progress on the console: a rich table on a terminal, plain lines otherwise."""

from __future__ import annotations

import threading
import time

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table

from module_system.orchestrator.stats import BatchStats, StatsSnapshot
from module_system.orchestrator.units import human_bytes

PLAIN_INTERVAL = 5.0
QUIET_INTERVAL = 30.0


def status_line(s: StatsSnapshot) -> str:
    return (
        f"jobs {s.finished}/{s.submitted} done (running {s.running}, queued {s.queued}, "
        f"failed {s.failed}, cancelled {s.cancelled}) | files {s.files_done}/{s.files_listed} "
        f"(landed {s.files_landed}, quarantined {s.files_quarantined}, "
        f"unchanged {s.files_skipped}, failed {s.files_failed}) | "
        f"{s.files_per_second:.1f} files/s, {human_bytes(s.bytes_per_second)}/s"
    )


def live_view(s: StatsSnapshot) -> Group:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("queued", "running", "completed", "failed", "cancelled"):
        table.add_column(column, justify="right")
    table.add_column("files done/listed", justify="right")
    table.add_column("landed / quarantined / unchanged", justify="right")
    table.add_column("rate", justify="right")
    table.add_row(
        str(s.queued), str(s.running), str(s.completed), str(s.failed), str(s.cancelled),
        f"{s.files_done}/{s.files_listed}",
        f"{s.files_landed} / {s.files_quarantined} / {s.files_skipped}",
        f"{s.files_per_second:.1f} files/s  {human_bytes(s.bytes_per_second)}/s",
    )  # fmt: skip
    bar = ProgressBar(total=max(s.submitted, 1), completed=s.finished, width=60)
    return Group(table, bar)


class Monitor:
    """Shows ``stats`` until stopped. The live display runs for ``duration`` seconds
    (the seed's ``--monitor-duration``); after that a status line every 30 s."""

    def __init__(self, stats: BatchStats, console: Console, duration: float = 30.0) -> None:
        self.stats = stats
        self.console = console
        self.duration = duration
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="monitor", daemon=True)

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        deadline = time.monotonic() + self.duration
        if self.console.is_terminal and self.duration > 0:
            with Live(console=self.console, refresh_per_second=4, transient=False) as live:
                while time.monotonic() < deadline and not self._stop.wait(0.25):
                    live.update(live_view(self.stats.snapshot()))
                live.update(live_view(self.stats.snapshot()))
        else:
            while time.monotonic() < deadline and not self._stop.wait(PLAIN_INTERVAL):
                self.console.print(status_line(self.stats.snapshot()), highlight=False)
        while not self._stop.wait(QUIET_INTERVAL):
            self.console.print(status_line(self.stats.snapshot()), highlight=False)
