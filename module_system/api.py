"""The library entry points the CLI is a thin layer over."""

from __future__ import annotations

import os
from pathlib import Path

from module_system.config import BatchFile, Registry, load_batch, load_registry
from module_system.config.remote import local_copies
from module_system.errors import ConfigError
from module_system.orchestrator.batch import run_batch
from module_system.orchestrator.executor import JobExecutor
from module_system.orchestrator.stats import BatchStats
from module_system.pipeline import RunOptions
from module_system.results import BatchResult
from module_system.state.store import StateStore

REGISTRY_ENV = "MODULE_SYSTEM_REGISTRY"
# The seed kept its registry beside the orchestrator; a registry in the working directory wins.
REGISTRY_CANDIDATES = (Path("project_registry.yaml"), Path("orchestrator/project_registry.yaml"))


def find_registry(path: str | os.PathLike[str] | None = None) -> Path:
    """CLI flag, else ``MODULE_SYSTEM_REGISTRY``, else the first of the usual places."""
    if path:
        return Path(path)
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV])
    for candidate in REGISTRY_CANDIDATES:
        if candidate.exists():
            return candidate
    raise ConfigError(
        "no registry given: pass --registry FILE, set MODULE_SYSTEM_REGISTRY, "
        "or create project_registry.yaml in the working directory"
    )


def check(
    registry_path: str | os.PathLike[str] | None, batch_path: str | os.PathLike[str] | None = None
) -> tuple[Registry, BatchFile | None]:
    """Load and check the registry and (optionally) a batch file; raise ConfigError.
    Either may be ``s3://bucket/key`` or an ``https://`` URL, fetched afresh each time."""
    registry_ref = registry_path or os.environ.get(REGISTRY_ENV)
    with local_copies(registry_ref, batch_path) as (registry_file, batch_file):
        registry = load_registry(find_registry(registry_file))
        batch = load_batch(batch_file, registry) if batch_file else None
    return registry, batch


def run(
    batch_path: str | os.PathLike[str],
    registry_path: str | os.PathLike[str] | None = None,
    *,
    max_workers: int = 20,
    state_url: str | None = None,
    options: RunOptions = RunOptions(),
    stats: BatchStats | None = None,
    executor: JobExecutor | None = None,
) -> BatchResult:
    """Check the config, then run every job of the batch file.

    >>> result = run("jobs.json", "project_registry.yaml", max_workers=10)  # doctest: +SKIP
    >>> result.exit_code()  # doctest: +SKIP
    0
    """
    registry, batch = check(registry_path, batch_path)
    assert batch is not None
    return run_checked(registry, batch, str(batch_path), max_workers=max_workers,
                       state_url=state_url, options=options, stats=stats,
                       executor=executor)  # fmt: skip


def run_checked(
    registry: Registry,
    batch: BatchFile,
    batch_file: str = "",
    *,
    max_workers: int = 20,
    state_url: str | None = None,
    options: RunOptions = RunOptions(),
    stats: BatchStats | None = None,
    executor: JobExecutor | None = None,
) -> BatchResult:
    """Run an already loaded batch against an already loaded registry, on ``executor``
    (default: a thread pool of ``max_workers``; see
    :func:`module_system.orchestrator.choice.make_executor`)."""
    state = StateStore(state_url)
    try:
        return run_batch(registry, batch, state, max_workers=max_workers, options=options,
                         stats=stats, batch_file=batch_file, executor=executor)  # fmt: skip
    finally:
        state.close()
