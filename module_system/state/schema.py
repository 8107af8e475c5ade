"""Tables of the state store. Changes go through :mod:`module_system.state.migrations`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

schema_migrations = Table(
    "ms_schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

runs = Table(
    "ms_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("batch_file", Text, nullable=False, default=""),
    Column("status", String(32), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)

jobs = Table(
    "ms_jobs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("job_id", String(200), primary_key=True),
    Column("service_id", String(200), nullable=False, index=True),
    Column("status", String(32), nullable=False),
    Column("error", Text),
    Column("counts", JSON),
    Column("manifest_key", Text),
    Column("retries", JSON),  # retries by reason code
    Column("source_type", String(64)),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
)

# The latest landed state of each item of each service: what makes runs incremental.
files = Table(
    "ms_files",
    metadata,
    Column("service_id", String(200), primary_key=True),
    Column("item_key", Text, primary_key=True),
    Column("source_uri", Text, nullable=False),
    Column("version", Text),
    Column("size", BigInteger),
    Column("sha256", String(64), nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("landing_key", Text, nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("job_id", String(200), nullable=False),
    Column("landed_at", DateTime(timezone=True), nullable=False),
)

# Source-specific progress markers, e.g. an API's incremental cursor.
cursors = Table(
    "ms_cursors",
    metadata,
    Column("service_id", String(200), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


# What happened to every file of every job (one row per file per job): the dashboard's
# job page, "why was this skipped", and the provenance the S3 manifests also hold.
job_files = Table(
    "ms_job_files",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("job_id", String(200), nullable=False),
    Column("service_id", String(200), nullable=False),
    Column("item_key", Text, nullable=False),
    Column("source_uri", Text, nullable=False),
    Column("outcome", String(16), nullable=False),  # landed, quarantined, skipped, ...
    Column("size", BigInteger),
    Column("verdict", String(16)),
    Column("landing_key", Text),
    Column("sha256", String(64)),
    Column("error", Text),
    Column("details", JSON),  # validator messages (capped), landing path, notes
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index("ix_ms_job_files_job", "run_id", "job_id", "outcome"),
    Index("ix_ms_job_files_service", "service_id", "recorded_at"),
)

# One job per service at a time, across processes and machines: a lease the running job
# renews; a lease whose holder died expires.
leases = Table(
    "ms_leases",
    metadata,
    Column("service_id", String(200), primary_key=True),
    Column("run_id", String(64), nullable=False),
    Column("job_id", String(200), nullable=False),
    Column("holder", String(200), nullable=False),  # host:pid:uuid of the taker
    Column("acquired_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)


def upsert_insert(engine: Engine) -> Any:
    """The ``insert`` of ``engine``'s dialect, which has ON CONFLICT. PostgreSQL's dialect
    module is imported only by PostgreSQL users: it costs ~30 ms of every start-up."""
    if engine.dialect.name == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert
    from sqlalchemy.dialects import postgresql

    return postgresql.insert
