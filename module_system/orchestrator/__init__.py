"""Running batches of jobs: executor, statistics, live monitor and report."""

from module_system.orchestrator.batch import run_batch
from module_system.orchestrator.executor import JobExecutor, ThreadJobExecutor
from module_system.orchestrator.stats import BatchStats

__all__ = ["BatchStats", "JobExecutor", "ThreadJobExecutor", "run_batch"]
