"""Small, recorded schema migrations: each runs once, in order, inside a transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, inspect, select, text

from module_system.state import schema


def _initial(conn: Connection) -> None:
    for table in (schema.runs, schema.jobs, schema.files, schema.cursors):
        table.create(conn, checkfirst=True)


def _job_files_and_leases(conn: Connection) -> None:
    for table in (schema.job_files, schema.leases):
        table.create(conn, checkfirst=True)
    have = {column["name"] for column in inspect(conn).get_columns("ms_jobs")}
    # A new database got these columns from the current table definition in step 1.
    if "retries" not in have:
        conn.execute(text("ALTER TABLE ms_jobs ADD COLUMN retries JSON"))
    if "source_type" not in have:
        conn.execute(text("ALTER TABLE ms_jobs ADD COLUMN source_type VARCHAR(64)"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS ix_ms_runs_started ON ms_runs (started_at)"))


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "runs, jobs, files and cursors", _initial),
    (2, "per-file records, service leases, job retries", _job_files_and_leases),
]


def migrate(conn: Connection) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied."""
    schema.schema_migrations.create(conn, checkfirst=True)
    done = set(conn.scalars(select(schema.schema_migrations.c.version)))
    applied = []
    for version, name, step in MIGRATIONS:
        if version in done:
            continue
        step(conn)
        conn.execute(
            schema.schema_migrations.insert().values(
                version=version, name=name, applied_at=datetime.now(UTC)
            )
        )
        applied.append(version)
    return applied
