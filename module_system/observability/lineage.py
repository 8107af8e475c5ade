"""OpenLineage run events for each job: START, then COMPLETE or FAIL, with the source as the
input dataset and the landing prefix as the output dataset.

Configured the standard way of the ``openlineage-python`` client (module-system[lineage]):
``OPENLINEAGE_URL`` (plus ``OPENLINEAGE_API_KEY``), an ``openlineage.yml`` named by
``OPENLINEAGE_CONFIG`` or found in the working directory or ``~/.openlineage/``, or
``OPENLINEAGE__TRANSPORT__*`` variables; ``OPENLINEAGE_DISABLED=true`` turns it off.
Without any of these nothing is sent (the client alone would print events to the console).
The job namespace is ``OPENLINEAGE_NAMESPACE`` (default ``module_system``), the job name the
service id: one OpenLineage job per service, one run per Module System job.

Events are sent by one background thread, so a slow or unreachable receiver (the client
retries with backoff) never delays a job; a failure to emit is logged as a warning and never
fails the job. :func:`flush` waits for the events queued so far (also at exit, briefly).

Hook, in the pipeline's job runner::

    lineage = JobLineage.for_job(service_id, job_id, source_uri(service.type, service.source),
                                 f"s3://{landing.bucket}/{layout.root}")
    lineage.start()
    ...
    lineage.finish(result.status, result.error, files=counts.uploaded, size=counts.bytes)
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from module_system.observability.redaction import mask_url, redact

log = logging.getLogger(__name__)
NAMESPACE_ENV = "OPENLINEAGE_NAMESPACE"
DEFAULT_NAMESPACE = "module_system"
_client_lock = threading.Lock()
_client: Any = None
_client_failed = False


def configured() -> bool:
    """True when the standard OpenLineage settings name a destination."""
    if os.environ.get("OPENLINEAGE_DISABLED", "").strip().lower() == "true":
        return False
    if os.environ.get("OPENLINEAGE_URL"):
        return True
    if any(name.startswith("OPENLINEAGE__TRANSPORT") for name in os.environ):
        return True
    candidates = [os.environ.get("OPENLINEAGE_CONFIG"), "openlineage.yml",
                  str(Path.home() / ".openlineage" / "openlineage.yml")]  # fmt: skip
    return any(path and Path(path).is_file() for path in candidates)


@dataclass(frozen=True)
class Dataset:
    namespace: str
    name: str

    @classmethod
    def from_uri(cls, uri: str) -> Dataset:
        """``s3://bucket/key`` -> (``s3://bucket``, ``key``); ``scheme://host:port/path``
        -> (``scheme://host:port``, ``/path``), following OpenLineage's naming."""
        parts = urlsplit(mask_url(uri))
        host = parts.hostname or ""
        authority = f"{host}:{parts.port}" if parts.port else host
        namespace = f"{parts.scheme}://{authority}"
        path = parts.path.lstrip("/") if parts.scheme == "s3" else (parts.path or "/")
        return cls(namespace, path)


def source_uri(source_type: str, source: Any) -> str:
    """Where a service reads from, from its typed ``source:`` block: a bucket and prefix, a
    host and path, a URL or the first start URL. A source config may define
    ``lineage_uri()`` to say it itself."""
    if callable(getattr(source, "lineage_uri", None)):
        return str(source.lineage_uri())
    if getattr(source, "bucket", None):
        return f"s3://{source.bucket}/{getattr(source, 'prefix', '') or ''}"
    if getattr(source, "host", None):
        port = getattr(source, "port", None)
        authority = f"{source.host}:{port}" if port else source.host
        return f"{source_type}://{authority}{getattr(source, 'path', '') or '/'}"
    if getattr(source, "url", None):
        return str(source.url).split("?")[0]
    urls = getattr(source, "start_urls", None)
    return str(urls[0]) if urls else f"{source_type}://unknown"


class JobLineage:
    """The OpenLineage run of one job. Every method is safe to call when lineage is off."""

    def __init__(self, job_name: str, job_id: str, inputs: list[Dataset],
                 outputs: list[Dataset], client: Any | None) -> None:  # fmt: skip
        self.job_name, self.job_id = job_name, job_id
        self.inputs, self.outputs = inputs, outputs
        self.run_id = str(uuid.uuid4())
        self.client = client  # None: lineage is off

    @classmethod
    def for_job(cls, service_id: str, job_id: str, source: str, output: str) -> JobLineage:
        client = _shared_client() if configured() else None
        inputs, outputs = [Dataset.from_uri(source)], [Dataset.from_uri(output)]
        return cls(service_id, job_id, inputs, outputs, client)

    def start(self) -> None:
        self._emit("START")

    def finish(self, status: str, error: str | None = None, *, files: int | None = None,
               size: int | None = None) -> None:  # fmt: skip
        """COMPLETE for a completed job, FAIL for any other end (failed, timed out,
        cancelled), with the error message."""
        if str(status) == "completed":
            self._emit("COMPLETE", files=files, size=size)
        else:
            self._emit("FAIL", error=error or str(status))

    def _emit(self, state: str, **details: Any) -> None:
        if self.client is None:
            return
        try:
            event = self._event(state, **details)
        except Exception as exc:  # lineage is an observer: it must never fail the job
            log.warning("OpenLineage %s event of job %s not made: %r", state, self.job_id, exc)
            return
        _emitter().put(self.client, event, f"{state} event of job {self.job_id}")

    def _event(self, state: str, error: str | None = None, files: int | None = None,
               size: int | None = None) -> Any:  # fmt: skip
        from openlineage.client.event_v2 import (
            InputDataset,
            Job,
            OutputDataset,
            Run,
            RunEvent,
            RunState,
        )
        from openlineage.client.facet_v2 import error_message_run, output_statistics_output_dataset

        run_facets: dict[str, Any] = {}
        if error:
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=redact(error), programmingLanguage="python"
            )
        output_facets: dict[str, Any] = {}
        if files is not None or size is not None:
            stats = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                fileCount=files, size=size
            )
            output_facets["outputStatistics"] = stats
        namespace = os.environ.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE
        return RunEvent(
            eventType=RunState[state],
            eventTime=datetime.now(UTC).isoformat(),
            run=Run(runId=self.run_id, facets=run_facets),
            job=Job(namespace=namespace, name=self.job_name),
            inputs=[InputDataset(d.namespace, d.name) for d in self.inputs],
            outputs=[
                OutputDataset(d.namespace, d.name, outputFacets=output_facets) for d in self.outputs
            ],
            producer="https://pypi.org/project/module-system/",
        )


class _Emitter:
    """A daemon thread sending queued events in order; a full queue drops (and logs)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._queue: queue.Queue[tuple[Any, Any, str]] = queue.Queue(capacity)
        threading.Thread(target=self._run, name="openlineage-emitter", daemon=True).start()

    def put(self, client: Any, event: Any, what: str) -> None:
        try:
            self._queue.put_nowait((client, event, what))
        except queue.Full:
            log.warning("OpenLineage %s dropped: %d events are waiting", what, self._queue.qsize())

    def _run(self) -> None:
        while True:
            client, event, what = self._queue.get()
            try:
                client.emit(event)
            except Exception as exc:  # never let one event stop the others
                log.warning("OpenLineage %s not sent: %s", what,
                            redact(str(exc)) or type(exc).__name__)  # fmt: skip
            finally:
                self._queue.task_done()

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True


_emitter_instance: _Emitter | None = None


def _emitter() -> _Emitter:
    global _emitter_instance
    with _client_lock:
        if _emitter_instance is None:
            _emitter_instance = _Emitter()
            atexit.register(flush, 5.0)
        return _emitter_instance


def flush(timeout: float = 30.0) -> bool:
    """Wait until the events queued so far were sent (or failed); False on timeout."""
    return _emitter_instance.flush(timeout) if _emitter_instance is not None else True


def _shared_client() -> Any | None:
    """One client per process, made on first use; None (logged once) when the library is
    missing or the configuration is broken."""
    global _client, _client_failed
    with _client_lock:
        if _client is None and not _client_failed:
            try:
                from openlineage.client import OpenLineageClient

                _client = OpenLineageClient()
            except ImportError:
                _client_failed = True
                log.warning("OpenLineage is configured but not installed: "
                            "pip install 'module-system[lineage]'")  # fmt: skip
            except Exception as exc:
                _client_failed = True
                log.warning("OpenLineage client not started: %s", redact(str(exc)))
        return _client


def reset_client() -> None:
    """Forget the shared client (tests; a changed configuration)."""
    global _client, _client_failed
    with _client_lock:
        _client, _client_failed = None, False
