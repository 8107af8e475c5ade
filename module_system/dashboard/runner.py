"""Re-runs started from the dashboard: each runs in a thread of the dashboard process.

The button's request waits only until the new run is recorded, then redirects to its page;
the run goes on in the background. Stopping the dashboard cancels running re-runs the way
Ctrl-C cancels a batch: no new files, the current ones finish.
"""

from __future__ import annotations

import logging
import queue
import threading
from pathlib import Path

from module_system.api import find_registry
from module_system.config import Registry, load_registry
from module_system.config.models import BatchFile
from module_system.dashboard.settings import DashboardSettings
from module_system.observability.logging import DEFAULT_LOG_DIR
from module_system.observability.redaction import redact
from module_system.orchestrator.batch import run_batch
from module_system.orchestrator.rerun import rerun_batch, rerun_batch_file
from module_system.pipeline import RunOptions
from module_system.state import StateStore

log = logging.getLogger("module_system.dashboard")
START_TIMEOUT = 60.0  # seconds the button waits for the new run to be recorded


class _NoticingStore(StateStore):
    """A state store that tells the dashboard the new run's id as soon as it is recorded."""

    def __init__(self, url: str | None) -> None:
        super().__init__(url)
        self.started: queue.Queue[str | BaseException] = queue.Queue(maxsize=2)

    def start_run(self, run_id: str, description: str, batch_file: str) -> None:
        super().start_run(run_id, description, batch_file)
        self.started.put(run_id)


class Reruns:
    def __init__(self, settings: DashboardSettings, store: StateStore) -> None:
        self.settings = settings
        self.store = store
        self._cancel = threading.Event()
        self._threads: list[threading.Thread] = []

    def registry_path(self) -> Path | None:
        try:
            return find_registry(self.settings.registry_path)
        except Exception:
            return None

    def start(self, run_id: str) -> str:
        """Start re-running the failed jobs of ``run_id``; return the new run's id.

        Raises ConfigError (no registry, unknown run, service gone) or NothingToRerun.
        """
        registry = load_registry(find_registry(self.settings.registry_path))
        batch = rerun_batch(self.store.engine, run_id, registry)
        run_store = _NoticingStore(self.store.url)
        thread = threading.Thread(target=self._run, args=(registry, batch, run_store, run_id),
                                  name=f"rerun-{run_id}", daemon=True)  # fmt: skip
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        started = run_store.started.get(timeout=START_TIMEOUT)
        if isinstance(started, BaseException):
            raise started
        return started

    def _run(self, registry: Registry, batch: BatchFile, store: _NoticingStore, of: str) -> None:
        log_dir = self.settings.log_dir or DEFAULT_LOG_DIR
        try:
            run_batch(registry, batch, store, max_workers=self.settings.rerun_workers,
                      options=RunOptions(log_dir=log_dir), cancel=self._cancel,
                      batch_file=rerun_batch_file(of))  # fmt: skip
        except BaseException as exc:  # the button's request hears of it, not just the log
            log.error("re-run of %s failed to start: %s", of, redact(str(exc)))
            store.started.put(exc)
        finally:
            store.close()

    def shutdown(self, timeout: float = 60.0) -> None:
        self._cancel.set()
        for thread in self._threads:
            thread.join(timeout)
