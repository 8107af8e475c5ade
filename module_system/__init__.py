"""Module System: batch data ingestion into S3 (Fetch → Validate → Upload).

>>> from module_system import run
>>> result = run("jobs.json", "project_registry.yaml", max_workers=10)  # doctest: +SKIP
"""

from module_system._version import __version__ as __version__
from module_system.api import check, find_registry, run
from module_system.config import BatchFile, Registry, load_batch, load_registry
from module_system.errors import (
    ConfigError,
    ModuleSystemError,
    TerminalError,
    TransientError,
)
from module_system.orchestrator.batch import run_batch
from module_system.pipeline import RunOptions, run_job
from module_system.results import BatchResult, FileOutcome, JobResult, JobStatus
from module_system.sources import SOURCE_TYPES, RemoteItem, Source
from module_system.state import StateStore
from module_system.validation import VALIDATORS, Validator, Verdict

__all__ = [
    "SOURCE_TYPES",
    "VALIDATORS",
    "BatchFile",
    "BatchResult",
    "ConfigError",
    "FileOutcome",
    "JobResult",
    "JobStatus",
    "ModuleSystemError",
    "Registry",
    "RemoteItem",
    "RunOptions",
    "Source",
    "StateStore",
    "TerminalError",
    "TransientError",
    "Validator",
    "Verdict",
    "check",
    "find_registry",
    "load_batch",
    "load_registry",
    "run",
    "run_batch",
    "run_job",
]
