"""Switches that apply to every job of a run, and the live-progress callback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from module_system.results import FileOutcome


@dataclass(frozen=True)
class RunOptions:
    full_refresh: bool = False  # ignore the state: land everything again
    fail_on_invalid: bool = False  # a quarantined file makes its job fail
    job_timeout: float | None = None  # seconds; overrides the service's timeout
    temp_dir: Path | None = None  # where job temp dirs are made (default: the system's)
    log_dir: Path | None = None  # per-job log files go here when set
    wait_for_lease: bool = False  # another run holds a service: wait instead of failing
    lease_ttl: float = 60.0  # seconds a killed run's lease outlives it (other hosts)


class Progress(Protocol):
    """Receives live counts (the batch statistics implement it)."""

    def file_listed(self) -> None: ...

    def file_finished(self, outcome: FileOutcome, nbytes: int) -> None: ...


class NullProgress:
    def file_listed(self) -> None:
        pass

    def file_finished(self, outcome: FileOutcome, nbytes: int) -> None:
        pass
