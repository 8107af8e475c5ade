"""Logging: JSON lines in files, readable lines on the console, secrets masked everywhere.

Secrets are masked in the log records themselves, not in our formatters, so that every
handler gets masked text (see :mod:`module_system.observability.redaction`).

Files follow the seed's layout under ``temp/logs/``:
``system_orchestrator_job_executor.log`` for the whole run and
``{job_id}_{service_id}_{module}.log`` for each job. ``LOG_LEVEL`` sets the level.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from module_system.observability.redaction import RedactingFilter, install_record_redaction

ROOT_LOGGER = "module_system"
EXECUTOR_LOG = "system_orchestrator_job_executor.log"
DEFAULT_LOG_DIR = Path("temp/logs")

current_job: ContextVar[tuple[str, str] | None] = ContextVar("current_job", default=None)


class JobContextFilter(logging.Filter):
    """Stamps each record with the job it was logged for (from a context variable)."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = current_job.get()
        record.job_id, record.service_id = job if job else (None, None)
        return True


class OnlyJob(logging.Filter):
    def __init__(self, job_id: str) -> None:
        super().__init__()
        self.job_id = job_id

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "job_id", None) == self.job_id


class JsonFormatter(logging.Formatter):
    """One JSON object per line (the traceback from ``exc_text`` when redaction set it)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "thread": record.threadName,
        }
        for key in ("job_id", "service_id"):
            if getattr(record, key, None):
                entry[key] = getattr(record, key)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return orjson.dumps(entry).decode()


class ConsoleFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(jobtag)s%(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        job_id = getattr(record, "job_id", None)
        record.jobtag = f"[{job_id}] " if job_id else ""
        return super().format(record)


def log_level(level: str | None = None) -> int:
    name = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    value = logging.getLevelName(name)
    return value if isinstance(value, int) else logging.INFO


def setup_logging(
    log_dir: Path = DEFAULT_LOG_DIR,
    level: str | None = None,
    console_handler: logging.Handler | None = None,
) -> Path:
    """Configure the package logger (idempotent); returns the executor log's path.

    Also starts redacting every log record, and puts a redacting filter on every handler
    that exists now (ours, the root logger's, libraries'): see
    :func:`~module_system.observability.redaction.install_record_redaction`.
    """
    install_record_redaction()
    log_dir.mkdir(parents=True, exist_ok=True)
    logger = logging.getLogger(ROOT_LOGGER)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(log_level(level))
    logger.propagate = False
    executor_log = log_dir / EXECUTOR_LOG
    file_handler = logging.FileHandler(executor_log, encoding="utf-8")
    file_handler.setFormatter(JsonFormatter())
    console = console_handler or logging.StreamHandler()
    console.setFormatter(ConsoleFormatter())
    for handler in (file_handler, console):
        handler.addFilter(JobContextFilter())
        logger.addHandler(handler)
    for handler in _all_handlers():
        _add_redacting_filter(handler)
    return executor_log


def _all_handlers() -> list[logging.Handler]:
    loggers = [logging.getLogger(), *list(logging.Logger.manager.loggerDict.values())]
    return [h for lg in loggers if isinstance(lg, logging.Logger) for h in lg.handlers]


def _add_redacting_filter(handler: logging.Handler) -> None:
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter())


@contextmanager
def job_logging(log_dir: Path, job_id: str, service_id: str, module: str) -> Iterator[Path]:
    """Route this job's records to ``{job_id}_{service_id}_{module}.log`` while it runs."""
    path = log_dir / f"{job_id}_{service_id}_{module}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    handler.addFilter(JobContextFilter())
    handler.addFilter(OnlyJob(job_id))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger(ROOT_LOGGER)
    logger.addHandler(handler)
    token = current_job.set((job_id, service_id))
    try:
        yield path
    finally:
        current_job.reset(token)
        logger.removeHandler(handler)
        handler.close()
