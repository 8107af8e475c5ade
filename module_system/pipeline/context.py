"""What the per-file flow may use of the job around it: ids, layout, retriers, manifest,
progress, counters and the stop/abort switches. Narrow on purpose: the file flow never
sees the job runner, the registry or the executor."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from module_system.errors import FatalError
from module_system.landing.keys import LandingLayout
from module_system.landing.manifest import Manifest
from module_system.pipeline.options import NullProgress, Progress
from module_system.results import FileCounts
from module_system.retry import Retrier
from module_system.state.store import StateStore


class Counters:
    """The job's file counts, updated from many threads."""

    def __init__(self, counts: FileCounts) -> None:
        self.counts = counts
        self._lock = threading.Lock()

    def add(self, **increments: int) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self.counts, name, getattr(self.counts, name) + value)


@dataclass
class FileContext:
    service_id: str
    job_id: str
    run_id: str
    concurrency: int
    layout: LandingLayout
    retrier: Retrier  # fetching from the source
    upload_retrier: Retrier  # landing
    manifest: Manifest
    counters: Counters
    state: StateStore
    stop_requested: Callable[[], bool]
    abort: Callable[[FatalError], None]
    on_flush: Callable[[], None] = lambda: None  # e.g. save the job's live counts
    progress: Progress = field(default_factory=NullProgress)
    full_refresh: bool = False  # ignore what the state says was landed
