"""The state store: the only code that reads or writes state.

SQLite by default (a file in the working directory); any SQLAlchemy URL works, and
PostgreSQL is what several machines share. Written with SQLAlchemy Core, so the same
statements run on both.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, select, text
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from module_system._optional import require
from module_system.errors import ConfigError
from module_system.observability.config_secrets import register_secrets_in
from module_system.observability.redaction import mask_url, redact
from module_system.state import schema
from module_system.state.migrations import migrate

DEFAULT_STATE_URL = "sqlite:///module_system_state.db"
STATE_URL_ENV = "MODULE_SYSTEM_STATE_URL"


def resolve_state_url(url: str | None) -> str:
    """CLI flag beats environment beats the SQLite default."""
    url = url or os.environ.get(STATE_URL_ENV) or DEFAULT_STATE_URL
    # psycopg (v3) is the driver we install; plain "postgresql://" would ask for psycopg2.
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


@dataclass(frozen=True)
class FileRecord:
    """What was landed for one item of one service."""

    item_key: str
    source_uri: str
    version: str | None
    size: int | None
    sha256: str
    verdict: str
    landing_key: str
    run_id: str
    job_id: str


class StateStore:
    """Runs, jobs, landed files and cursors, behind small methods."""

    def __init__(self, url: str | None = None) -> None:
        self.url = resolve_state_url(url)
        register_secrets_in(self.url)  # its password is masked wherever it would appear
        try:
            self.engine = _make_engine(self.url)
            self._migrate()
        except (ArgumentError, NoSuchModuleError, OperationalError) as exc:
            reason = redact(str(getattr(exc, "orig", None) or exc)).splitlines()[0]
            raise ConfigError(f"state store {mask_url(self.url)}: {reason}") from None

    def _migrate(self) -> None:
        # SQLite allows one writer at a time and makes the others sleep-and-retry; taking
        # turns on a lock inside the process is much faster than that busy loop.
        self._write_lock: AbstractContextManager[Any] = (
            threading.Lock() if self.engine.dialect.name == "sqlite" else nullcontext()
        )
        with _migration_lock(self.engine), self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # several workers may start at once
                conn.execute(text("SELECT pg_advisory_xact_lock(7261501)"))
            migrate(conn)

    def __repr__(self) -> str:
        return f"StateStore({mask_url(self.url)!r})"

    def close(self) -> None:
        self.engine.dispose()

    # runs and jobs -------------------------------------------------------------------
    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    def start_run(self, run_id: str, description: str, batch_file: str) -> None:
        with self._writing() as conn:
            conn.execute(
                schema.runs.insert().values(
                    run_id=run_id,
                    description=description,
                    batch_file=batch_file,
                    status="running",
                    started_at=_now(),
                )
            )

    def finish_run(self, run_id: str, status: str) -> None:
        with self._writing() as conn:
            conn.execute(
                schema.runs.update()
                .where(schema.runs.c.run_id == run_id)
                .values(status=status, finished_at=_now())
            )

    def mark_interrupted(self, run_id: str, job_id: str) -> None:
        """A job whose process died mid-way (its lease was taken over): no longer running."""
        error = "interrupted: its process stopped before the job ended"
        with self._writing() as conn:
            conn.execute(
                schema.jobs.update()
                .where(schema.jobs.c.run_id == run_id, schema.jobs.c.job_id == job_id,
                       schema.jobs.c.status == "running")
                .values(status="failed", error=error, finished_at=_now())
            )  # fmt: skip
            conn.execute(
                schema.runs.update()
                .where(schema.runs.c.run_id == run_id, schema.runs.c.status == "running")
                .values(status="interrupted", finished_at=_now())
            )

    def save_job(self, run_id: str, job_id: str, service_id: str, **values: Any) -> None:
        """Insert or update a job row (status, error, counts, timestamps)."""
        row = {"run_id": run_id, "job_id": job_id, "service_id": service_id, **values}
        self._upsert(schema.jobs, row, ["run_id", "job_id"])

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        query = select(schema.runs).order_by(schema.runs.c.started_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def jobs(self, run_id: str) -> list[dict[str, Any]]:
        query = select(schema.jobs).where(schema.jobs.c.run_id == run_id)
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(schema.jobs.c.job_id))]

    # files ---------------------------------------------------------------------------
    def landed_files(
        self, service_id: str, item_keys: Collection[str] | None = None
    ) -> dict[str, FileRecord]:
        """What was landed for ``service_id``, by item key: for the given keys (a job
        asks in batches, so its memory does not grow with the service's size), or all."""
        query = select(schema.files).where(schema.files.c.service_id == service_id)
        if item_keys is not None:
            query = query.where(schema.files.c.item_key.in_(list(item_keys)))
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        fields = FileRecord.__dataclass_fields__
        return {r["item_key"]: FileRecord(**{k: r[k] for k in fields}) for r in rows}

    def record_file(self, service_id: str, record: FileRecord) -> None:
        self.record_files(service_id, [record])

    def record_files(
        self,
        service_id: str,
        records: list[FileRecord],
        outcomes: list[dict[str, Any]] | None = None,
    ) -> None:
        """In one transaction: landed files (the last record of a key wins) and the
        per-job file outcomes (rows of ``ms_job_files``)."""
        now = _now()
        rows = {r.item_key: {"service_id": service_id, **r.__dict__, "landed_at": now}
                for r in records}  # fmt: skip
        with self._writing() as conn:
            if rows:
                stmt = self._upsert_statement(schema.files, rows, ["service_id", "item_key"])
                conn.execute(stmt, list(rows.values()))
            if outcomes:
                stamped = [{"service_id": service_id, "recorded_at": now, **o} for o in outcomes]
                conn.execute(schema.job_files.insert(), stamped)

    def job_files(self, run_id: str, job_id: str) -> list[dict[str, Any]]:
        """The recorded outcome of every file of one job."""
        table = schema.job_files
        query = (
            select(table)
            .where(table.c.run_id == run_id, table.c.job_id == job_id)
            .order_by(table.c.id)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # cursors -------------------------------------------------------------------------
    def get_cursor(self, service_id: str, name: str) -> str | None:
        table = schema.cursors
        query = select(table.c.value).where(table.c.service_id == service_id, table.c.name == name)
        with self.engine.connect() as conn:
            return conn.scalar(query)

    def set_cursor(self, service_id: str, name: str, value: str) -> None:
        row = {"service_id": service_id, "name": name, "value": value, "updated_at": _now()}
        self._upsert(schema.cursors, row, ["service_id", "name"])

    def cursors_for(self, service_id: str) -> CursorStore:
        return CursorStore(self, service_id)

    def _upsert(self, table: Any, row: dict[str, Any], keys: list[str]) -> None:
        self._upsert_many(table, [row], keys)

    def _upsert_many(self, table: Any, rows: list[dict[str, Any]], keys: list[str]) -> None:
        with self._writing() as conn:
            conn.execute(self._upsert_statement(table, rows, keys), rows)

    def _upsert_statement(self, table: Any, rows: Any, keys: list[str]) -> Any:
        stmt = schema.upsert_insert(self.engine)(table)
        first = rows[0] if isinstance(rows, list) else next(iter(rows.values()))
        updates = {name: stmt.excluded[name] for name in first if name not in keys}
        return stmt.on_conflict_do_update(index_elements=keys, set_=updates)


class CursorStore:
    """One service's cursors: the narrow view of state a source gets."""

    def __init__(self, store: StateStore, service_id: str) -> None:
        self._store = store
        self._service_id = service_id

    def get(self, name: str) -> str | None:
        return self._store.get_cursor(self._service_id, name)

    def set(self, name: str, value: str) -> None:
        self._store.set_cursor(self._service_id, name, value)


def _now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """SQLite has no advisory lock: stores opening one database file at once (threads or
    processes of one machine) take turns on a lock file beside it to migrate."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _make_engine(url: str) -> Engine:
    if url.startswith("postgresql+psycopg"):  # the driver comes with module-system[postgres]
        require("psycopg", extra="postgres", what=f"the state store {mask_url(url)}")
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=10, max_overflow=40, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
        # WAL lets readers (dashboard, history) run while jobs write.
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine
