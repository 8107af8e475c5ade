"""Log lines of jobs that run on Dask workers, brought back to the client.

On a worker, :class:`ForwardToClient` sends each record logged for a job (secrets already
masked) as a Dask event, tagged with the job's run. On the client, :class:`ClientLogs` logs it
again through the client's own handlers (console and run log) and writes it to the job's
file in the client's log directory, named as in a local run. The worker's own JSON log
file of the job is also uploaded beside its manifest (see :mod:`.dask_worker`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from module_system.observability.logging import (
    ROOT_LOGGER,
    JobContextFilter,
    JsonFormatter,
    OnlyJob,
    current_job,
)
from module_system.observability.redaction import redact

# The run of the job running in this context (set by the worker's task).
job_run: ContextVar[str | None] = ContextVar("module_system_job_run", default=None)


def log_message(record: logging.LogRecord) -> dict[str, Any]:
    """A log record as a plain, secret-free dict."""
    exception = record.exc_text
    if record.exc_info and not exception:
        exception = logging.Formatter().formatException(record.exc_info)
    return {
        "kind": "log", "job": record.job_id, "service": record.service_id,  # type: ignore[attr-defined]
        "logger": record.name, "level": record.levelno, "message": redact(record.getMessage()),
        "exception": redact(exception) if exception else None, "created": record.created,
        "thread": record.threadName,
    }  # fmt: skip


class ForwardToClient(logging.Handler):
    """Sends records logged for a job to the client, through ``send(message)``."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self._send = send
        self.addFilter(JobContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        run = job_run.get()
        if run is None or not getattr(record, "job_id", None):
            return  # the worker's own records stay in its logs
        try:
            self._send({**log_message(record), "run": run})
        except Exception:
            self.handleError(record)


class ClientLogs:
    """Logs forwarded records on the client, and keeps one file per job in ``log_dir``."""

    def __init__(self, log_dir: Path | None) -> None:
        self.log_dir = log_dir
        self._files: dict[str, logging.FileHandler] = {}
        self._lock = threading.Lock()

    def job_started(self, job_id: str, service_id: str, module: str) -> None:
        if self.log_dir is None:
            return
        with self._lock:
            if job_id in self._files:
                return  # a restarted job goes on in the same file
            self.log_dir.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(self.log_dir / f"{job_id}_{service_id}_{module}.log",
                                          encoding="utf-8")  # fmt: skip
            handler.setFormatter(JsonFormatter())
            handler.addFilter(JobContextFilter())
            handler.addFilter(OnlyJob(job_id))
            logging.getLogger(ROOT_LOGGER).addHandler(handler)
            self._files[job_id] = handler

    def job_ended(self, job_id: str) -> str | None:
        """Close the job's file; its path, if there is one."""
        with self._lock:
            handler = self._files.pop(job_id, None)
        if handler is None:
            return None
        logging.getLogger(ROOT_LOGGER).removeHandler(handler)
        handler.close()
        return handler.baseFilename

    def close(self) -> None:
        for job_id in list(self._files):
            self.job_ended(job_id)

    def replay(self, message: dict[str, Any]) -> None:
        logger = logging.getLogger(str(message["logger"]))
        level = int(message["level"])
        if not logger.isEnabledFor(level):
            return
        record = logging.makeLogRecord({
            "name": logger.name, "levelno": level, "levelname": logging.getLevelName(level),
            "msg": message["message"], "args": None, "exc_text": message.get("exception"),
            "created": message["created"], "threadName": message.get("thread"),
        })  # fmt: skip
        token = current_job.set((message["job"], message["service"]))
        try:
            logger.handle(record)
        finally:
            current_job.reset(token)
