"""Configuration: the registry of services and the batch file of jobs."""

from module_system.config.loader import load_batch, load_registry
from module_system.config.models import (
    BatchFile,
    JobSpec,
    LandingConfig,
    Registry,
    RetryConfig,
    S3Connection,
    ServiceConfig,
)

__all__ = [
    "BatchFile",
    "JobSpec",
    "LandingConfig",
    "Registry",
    "RetryConfig",
    "S3Connection",
    "ServiceConfig",
    "load_batch",
    "load_registry",
]
