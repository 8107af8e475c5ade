"""Small, recorded schema migrations: each runs once, in order, inside a transaction."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, select

from module_system.state import schema


def _initial(conn: Connection) -> None:
    for table in (schema.runs, schema.jobs, schema.files, schema.cursors):
        table.create(conn, checkfirst=True)


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "runs, jobs, files and cursors", _initial),
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
