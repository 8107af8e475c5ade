"""Typed configuration: the registry (landing + services) and the batch file.

Precedence, lowest first: model defaults < registry file < environment (``${VAR}`` in the
file, ``MODULE_SYSTEM_*`` variables) < CLI flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from module_system.config.schedule import ScheduleConfig
from module_system.observability.config_secrets import register_secrets_in


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class S3Connection(StrictModel):
    """Where and how to reach an S3 API. Without keys, boto3's own credential chain applies
    (environment, shared profile, SSO, instance role)."""

    endpoint_url: str | None = Field(
        None, description="an S3-compatible endpoint (MinIO, Ceph, R2, moto); unset: AWS"
    )
    region: str | None = Field(None, description="region name; unset: boto3's default")
    profile: str | None = Field(None, description="named profile from ~/.aws/config")
    aws_access_key_id: str | None = Field(
        None, description="explicit access key id; unset: the profile or boto3's chain"
    )
    aws_secret_access_key: SecretStr | None = Field(
        None, description="explicit secret access key (a secret: use ${VAR})"
    )
    aws_session_token: SecretStr | None = Field(
        None, description="session token of temporary keys (a secret: use ${VAR})"
    )

    @field_validator("endpoint_url", "region", "profile", "aws_access_key_id", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # `${S3_ENDPOINT_URL:-}` expands to "" when the variable is unset: that means "none".
        return None if value == "" else value

    @field_validator("aws_secret_access_key", "aws_session_token", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value


class RetryConfig(StrictModel):
    """Retries of transient failures: exponential backoff with full jitter."""

    attempts: int = Field(5, ge=1, le=100, description="tries per fetch, the first included")
    backoff: float = Field(0.5, ge=0, description="first delay in seconds")
    max_backoff: float = Field(30.0, ge=0, description="ceiling of any delay in seconds")
    max_retry_after: float = Field(300.0, ge=0, description="cap on a server's Retry-After")


class LandingConfig(S3Connection):
    """The bucket that receives validated and quarantined files."""

    bucket: str = Field(min_length=3, description="the bucket files land in")
    prefix: str = Field("", description="key prefix before data/... (a trailing / is added)")
    multipart_threshold_mb: int = Field(
        64, ge=5, description="files at least this many MB are uploaded in parts"
    )
    multipart_chunksize_mb: int = Field(
        16, ge=5, description="part size in MB (grown automatically past 10,000 parts)"
    )
    server_side_copy: bool = Field(
        True,
        description="land files from an S3 source on the same endpoint by server-side copy "
        "of the validated version (falls back to an upload when refused)",
    )
    server_side_copy_min_mb: float = Field(
        1.0,
        ge=0,
        description="smaller new files are uploaded, not copied: one request either way, and "
        "the bytes are in hand (a changed file is always copied: it saves the staging step)",
    )
    retry: RetryConfig = Field(default_factory=RetryConfig)

    @field_validator("prefix")
    @classmethod
    def _prefix_ends_with_slash(cls, value: str) -> str:
        value = value.lstrip("/")
        return value if not value or value.endswith("/") else value + "/"


class ExtractConfig(StrictModel):
    """``extract: {records: "article", fields: {title: "h1::text"}}``: one record per match
    of the ``records`` CSS selector; a field is ``css``, ``css::text`` or ``css::attr(name)``."""

    records: str = Field(min_length=1, description="CSS selector: one record per match")
    fields: dict[str, str] = Field(
        min_length=1,
        description="field name -> selector within the record: css, css::text or "
        "css::attr(name); no match gives null",
    )


class ServiceConfig(StrictModel):
    """One configured service. ``source`` holds the source type's own typed model and
    ``validation`` maps validator names to their typed options, both filled by the loader."""

    type: str
    source: Any
    validation: dict[str, Any] = Field(default_factory=dict)
    concurrency: int = Field(8, ge=1, le=256, description="files moved at once within a job")
    retry: RetryConfig = Field(default_factory=RetryConfig)
    timeout: float | None = Field(None, gt=0, description="job timeout in seconds")
    description: str = Field("", description="free text about the service")
    extract: ExtractConfig | None = Field(
        None, description="structured records from pages (web sources, docs/sources/web.md)"
    )
    schedule: ScheduleConfig | None = Field(
        None, description="when `module-system serve` runs the service"
    )


class Registry(StrictModel):
    """The parsed ``project_registry.yaml``."""

    landing: LandingConfig
    services: dict[str, ServiceConfig]
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _register_secrets(self) -> Registry:
        # Here rather than in the loader, so that a registry built in code (or a second
        # one in the same process) has its secrets masked in logs as well.
        register_secrets_in(self)
        return self


class JobSpec(StrictModel):
    """One entry of a batch file's ``jobs`` list."""

    job_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")
    service_id: str = Field(min_length=1)


class BatchFile(StrictModel):
    """The seed's batch format: ``{"description": ..., "jobs": [...]}``."""

    description: str = ""
    jobs: list[JobSpec]
