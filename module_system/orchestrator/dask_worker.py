"""What runs on a Dask worker: the worker's set-up and the task that runs one job.

A task receives only plain data (:class:`RemoteJob`): the job, the registry (schemas
already read into it on the client), the state store's URL, the run id and the options.
On the worker it finds or opens this process's state store, follows the batch's cancel
event, sends progress and log lines to the client as Dask events, runs the job with the
same :func:`run_job` as a local run, uploads the job's log file beside its manifest, and
returns the :class:`JobResult`.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import tempfile
import threading
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from distributed import Event, Worker, WorkerPlugin, get_client, get_worker

from module_system.config.models import JobSpec, LandingConfig, Registry
from module_system.errors import ConfigError, ModuleSystemError
from module_system.landing.keys import LandingLayout
from module_system.landing.uploader import S3Lander
from module_system.observability.config_secrets import register_secrets_in
from module_system.observability.logging import ROOT_LOGGER, setup_logging
from module_system.orchestrator import fingerprint
from module_system.orchestrator.cluster_limits import share_buckets_through
from module_system.orchestrator.progress import EventProgress
from module_system.orchestrator.remote_logs import ForwardToClient, job_run
from module_system.pipeline import RunOptions, run_job
from module_system.plugins import SOURCE_TYPES
from module_system.results import JobResult, JobStatus
from module_system.retry import Retrier
from module_system.state.lease import ServiceLease
from module_system.state.store import StateStore

log = logging.getLogger(__name__)
CANCEL_POLL = 1.0  # seconds a job's cancel watch waits on the scheduler per call
NOT_STARTED = "not started: batch interrupted"
# One Dask event topic for every run (messages name their run): the scheduler keeps the
# last events of each topic, so a topic per run would grow it run after run.
TOPIC = "module_system"


@dataclass(frozen=True)
class RemoteJob:
    """Everything a worker needs to run one job (all of it picklable)."""

    job: JobSpec
    registry: Registry
    state_url: str
    run_id: str
    options: RunOptions
    cancel_event: str  # name of the batch's distributed.Event, set on Ctrl-C
    fingerprint: fingerprint.Fingerprint  # the client's package and plugins


class WorkerMismatch(ConfigError):
    """This worker lacks what the client has (another version, a missing plugin)."""

    default_reason = "worker_mismatch"


class WorkerSetup(WorkerPlugin):
    """Checks each worker (also one joining later) and sets up its logging and limits."""

    name = "module_system-setup"

    def __init__(self, client_fingerprint: fingerprint.Fingerprint) -> None:
        self.client_fingerprint = client_fingerprint

    def setup(self, worker: Worker) -> None:
        prepare(worker, self.client_fingerprint)


_prepared_lock = threading.Lock()
_prepared: set[str] = set()  # addresses of the workers of this process already set up
_stores: dict[str, StateStore] = {}
_landers: dict[LandingConfig, S3Lander] = {}


@functools.cache
def _installed_here() -> fingerprint.Fingerprint:
    # What this process has loaded does not change while it runs: read it once.
    return fingerprint.installed()


def check(client_fingerprint: fingerprint.Fingerprint, address: str = "") -> None:
    """Raise :class:`WorkerMismatch` when this process differs from the client."""
    problems = fingerprint.differences(client_fingerprint, _installed_here())
    if problems:
        where = f"worker {address}" if address else "worker"
        raise WorkerMismatch([f"{where}: {problem}" for problem in problems])


def prepare(worker: Worker, client_fingerprint: fingerprint.Fingerprint) -> None:
    """Check this worker, then (once per worker) set up logging, secret masking and the
    cluster-wide rate limits."""
    check(client_fingerprint, worker.address)
    with _prepared_lock:
        if worker.address in _prepared:
            return
        console = logging.StreamHandler(sys.stderr)
        setup_logging(worker_log_dir(), console_handler=console)
        # A job's lines go to the client (and its log file to S3): the worker's own stderr
        # keeps the rest, so a local cluster does not print each job line twice.
        console.addFilter(lambda record: not getattr(record, "job_id", None))
        logging.getLogger(ROOT_LOGGER).addHandler(ForwardToClient(partial(worker.log_event, TOPIC)))
        share_buckets_through(worker)
        _prepared.add(worker.address)


def _send(worker: Worker, run_id: str, message: dict[str, Any]) -> None:
    worker.log_event(TOPIC, {**message, "run": run_id})


def worker_log_dir() -> Path:
    return Path(tempfile.gettempdir()) / "module_system" / f"worker-{os.getpid()}"


def state_store(url: str) -> StateStore:
    """This process's store for ``url``: its connection pool serves every job here."""
    with _prepared_lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = StateStore(url)
        return store


def run_remote_job(task: RemoteJob) -> JobResult:
    """The Dask task of one job. Never raises for the job's own failures."""
    worker = get_worker()
    job = task.job
    try:
        prepare(worker, task.fingerprint)
    except WorkerMismatch as exc:
        return JobResult(job.job_id, job.service_id, status=JobStatus.FAILED, error=str(exc))
    register_secrets_in(task.registry)  # unpickling skips the registry's own registration
    batch_cancel = Event(task.cancel_event, client=get_client())
    if batch_cancel.is_set():
        return JobResult(job.job_id, job.service_id, status=JobStatus.CANCELLED,
                         error=NOT_STARTED)  # fmt: skip
    send = partial(_send, worker, task.run_id)
    source_type = SOURCE_TYPES.get(task.registry.services[job.service_id].type).type_name
    send({"kind": "started", "job": job.job_id, "service": job.service_id,
          "module": f"{source_type}_module", "worker": worker.address})  # fmt: skip
    cancel = threading.Event()
    progress = EventProgress(send, job.job_id)
    state = state_store(task.state_url)
    options = _options_here(task, state)
    token = job_run.set(task.run_id)
    try:
        with _CancelWatch(batch_cancel, cancel):
            result = run_job(job, task.registry, state, task.run_id, options, cancel, progress)
    finally:
        progress.flush()
        job_run.reset(token)
    _upload_log(task, result)
    return result


def _options_here(task: RemoteJob, state: StateStore) -> RunOptions:
    """The client's options, with this worker's own temp and log directories.

    When an earlier attempt of this very job holds the service's lease, its worker died
    (Dask runs the task again): wait for that lease to expire instead of failing."""
    temp_dir = task.options.temp_dir
    if temp_dir is not None and not temp_dir.is_dir():
        temp_dir = None
    options = replace(task.options, temp_dir=temp_dir, log_dir=worker_log_dir() / task.run_id)
    job = task.job
    held = ServiceLease(state, job.service_id, task.run_id, job.job_id).current()
    if held is not None and (held.run_id, held.job_id) == (task.run_id, job.job_id):
        log.warning("an earlier attempt of job %s holds the lease of %s: waiting for it to "
                    "end or expire", job.job_id, job.service_id)  # fmt: skip
        options = replace(options, wait_for_lease=True)
    return options


def _upload_log(task: RemoteJob, result: JobResult) -> None:
    """Put the job's JSON log file beside its manifest, so it is not stranded here."""
    if not result.log_file or not Path(result.log_file).is_file():
        return
    path = Path(result.log_file)
    service = task.registry.services[task.job.service_id]
    source = SOURCE_TYPES.get(service.type)
    layout = LandingLayout(task.registry.landing.prefix, source.type_name, task.job.service_id,
                           source.landing_area)  # fmt: skip
    key = layout.log_key(task.job.job_id)
    try:
        lander = _lander(task.registry.landing)
        digest = lander.digest(path)
        metadata = {"job-id": task.job.job_id, "run-id": task.run_id}
        Retrier(task.registry.landing.retry).call(
            lambda: lander.upload_file(path, key, digest, metadata), f"job log {key}"
        )
        path.unlink(missing_ok=True)
        # Where to read it; the client puts its own copy's path here if it keeps one.
        result.log_file = f"s3://{task.registry.landing.bucket}/{key}"
    except (ModuleSystemError, OSError) as exc:
        result.notes.append(f"the job's log file was not uploaded to {key}: {exc}")


def _lander(landing: LandingConfig) -> S3Lander:
    """This process's lander for log files (thread-safe; a boto3 client is slow to make)."""
    with _prepared_lock:
        lander = _landers.get(landing)
        if lander is None:
            lander = _landers[landing] = S3Lander(landing)
        return lander


class _CancelWatch:
    """Sets ``cancel`` when the batch's distributed Event is set, or when the scheduler is
    gone (nobody is left to collect this job's result: stop after the current files)."""

    def __init__(self, batch_cancel: Any, cancel: threading.Event) -> None:
        self._batch_cancel, self._cancel = batch_cancel, cancel
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="cancel-watch", daemon=True)

    def __enter__(self) -> _CancelWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.is_set():
            try:
                if self._batch_cancel.wait(timeout=CANCEL_POLL):
                    break
            except Exception as exc:
                if not self._done.is_set():
                    log.warning("lost the Dask scheduler (%s): stopping after the current files",
                                type(exc).__name__)  # fmt: skip
                break
        if not self._done.is_set():
            self._cancel.set()
