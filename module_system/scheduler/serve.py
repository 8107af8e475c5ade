"""``module-system serve``: the scheduler, and the dashboard beside it in the same process
when module-system[dashboard] is installed."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from module_system import api
from module_system.config import BatchFile, JobSpec, Registry
from module_system.pipeline import RunOptions
from module_system.scheduler.clock import Clock
from module_system.scheduler.scheduler import Launch, serve_schedules
from module_system.state import StateStore, queries

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    registry: str | None = None  # path or s3:// / https:// URL; default as for `run`
    state_url: str | None = None
    log_dir: Path = Path("temp/logs")
    max_workers: int = 20  # jobs of one scheduled run at once (one job per run today)


def job_launcher(registry: Registry, options: ServeOptions) -> Launch:
    """Runs one job of a service as its own run, recorded like any other."""
    run_options = RunOptions(log_dir=options.log_dir)

    def launch(service_id: str, job_id: str) -> None:
        batch = BatchFile(
            description=f"schedule: {service_id}",
            jobs=[JobSpec(job_id=job_id, service_id=service_id)],
        )
        result = api.run_checked(registry, batch, f"schedule:{service_id}",
                                 max_workers=options.max_workers, state_url=options.state_url,
                                 options=run_options)  # fmt: skip
        for job in result.jobs:
            log.info("schedule: job %s of %s %s", job.job_id, service_id, job.status)

    return launch


def last_runs(registry: Registry, state_url: str | None) -> dict[str, datetime | None]:
    """When each service's latest job started, from the state store."""
    store = StateStore(state_url)
    try:
        summaries = queries.services_summary(store.engine)
    finally:
        store.close()
    started = {s.service_id: s.last_started_at for s in summaries}
    return {service_id: started.get(service_id) for service_id in registry.services}


def serve(
    options: ServeOptions,
    dashboard: Any | None = None,
    clock: Clock | None = None,
    stop: threading.Event | None = None,
) -> None:
    """Run the schedules until ``stop`` is set or Ctrl-C; with ``dashboard`` (a callable
    that serves it and returns when stopped) the dashboard runs in this thread meanwhile."""
    registry, _ = api.check(options.registry)
    stop = stop or threading.Event()
    launch = job_launcher(registry, options)
    thread = serve_schedules(registry, launch, last_runs(registry, options.state_url), stop, clock)
    try:
        if dashboard is not None:
            dashboard()
        else:
            while not stop.wait(1.0):
                pass
    except KeyboardInterrupt:
        log.info("serve: stopping (jobs that run now are finished first)")
    finally:
        stop.set()
        thread.join()
