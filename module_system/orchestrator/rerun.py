"""Re-run what failed: a batch of the failed, timed-out and cancelled jobs of an earlier run.

The new run records ``rerun-failed:{run_id}`` as its batch file, so the dashboard links the
two runs both ways.
"""

from __future__ import annotations

from sqlalchemy import Engine

from module_system.config.models import BatchFile, JobSpec, Registry
from module_system.errors import ConfigError, ModuleSystemError
from module_system.state.queries import RERUN_PREFIX, RERUNNABLE, run_detail


class NothingToRerun(ModuleSystemError):
    """Every job of the run completed."""

    default_reason = "nothing_to_rerun"


def rerun_batch_file(run_id: str) -> str:
    """What a re-run records as its batch file."""
    return RERUN_PREFIX + run_id


def rerun_batch(engine: Engine, run_id: str, registry: Registry) -> BatchFile:
    """The batch that runs the failed, timed-out and cancelled jobs of ``run_id`` again.

    Raises ConfigError for an unknown run or a service no longer in the registry, and
    NothingToRerun when every job of the run completed.
    """
    detail = run_detail(engine, run_id)
    if detail is None:
        raise ConfigError(f"--rerun-failed: no run {run_id!r} in the state store")
    if detail.run.status == "running":
        raise ConfigError(f"--rerun-failed: run {run_id} is still running")
    jobs = [job for job in detail.jobs if job.status in RERUNNABLE]
    if not jobs:
        raise NothingToRerun(f"run {run_id} has no failed, timed-out or cancelled jobs")
    missing = sorted({j.service_id for j in jobs} - set(registry.services))
    if missing:
        raise ConfigError(
            [f"--rerun-failed {run_id}: service {s!r} is not in the registry" for s in missing]
        )
    description = f"Re-run of failed jobs of {run_id}"
    if detail.run.description:
        description += f" ({detail.run.description})"
    specs = [JobSpec(job_id=j.job_id, service_id=j.service_id) for j in jobs]
    return BatchFile(description=description, jobs=specs)
