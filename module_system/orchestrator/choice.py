"""Choosing where jobs run, from the CLI's ``--executor`` (kept apart from the executors
themselves, so the Dask executor can build on the thread pool's batch context)."""

from __future__ import annotations

import math

from module_system._optional import require
from module_system.orchestrator.executor import JobExecutor, ThreadJobExecutor


def make_executor(
    kind: str = "threads",
    *,
    max_workers: int = 20,
    scheduler: str | None = None,
    local_workers: int | None = None,
) -> JobExecutor:
    """``threads`` (the default) or ``dask``: on the cluster at ``scheduler``, or on a local
    cluster of ``local_workers`` processes sharing ``max_workers`` job slots."""
    if kind == "threads":
        return ThreadJobExecutor(max_workers)
    require("distributed", extra="dask", what="--executor dask")
    from module_system.orchestrator.dask_executor import DaskJobExecutor

    if local_workers is not None:
        threads = max(1, math.ceil(max_workers / local_workers))
        return DaskJobExecutor(local_workers=local_workers, threads_per_worker=threads)
    return DaskJobExecutor(scheduler)
