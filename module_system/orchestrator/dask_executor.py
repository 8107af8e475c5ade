"""Jobs as tasks on a Dask cluster: an existing one (``--scheduler tcp://host:8786``) or a
local one of ``--local-workers N`` processes.

Before the batch starts, the executor checks that every worker has the client's version of
the package and the same source and validator plugins, and installs a worker plugin (which
also checks workers that join later and sets up their logging) and a scheduler plugin (the
cluster-wide rate limits, :mod:`.cluster_limits`). Each job is one task with a unique key
(``pure=False``): Dask runs it at least once, and a job whose worker died is run again on
another worker, which the report notes. Workers send progress and log lines as Dask
events (tagged with the run); the client applies them to its statistics and logs. Ctrl-C
sets the batch's ``distributed.Event``: running jobs finish their current files, and
tasks that have not started are cancelled.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from distributed import Client, Event, LocalCluster
from distributed import Future as DaskFuture

from module_system._version import __version__
from module_system.config.models import JobSpec, Registry
from module_system.errors import ConfigError, ModuleSystemError
from module_system.observability.redaction import mask_url, redact
from module_system.orchestrator import fingerprint
from module_system.orchestrator.cluster_limits import PLUGIN_NAME, ClusterLimits
from module_system.orchestrator.dask_worker import TOPIC, RemoteJob, WorkerSetup, run_remote_job
from module_system.orchestrator.executor import BatchContext
from module_system.orchestrator.progress import apply_files
from module_system.orchestrator.remote_logs import ClientLogs
from module_system.results import JobResult

log = logging.getLogger(__name__)
SCHEDULER_ENV = "MODULE_SYSTEM_DASK_SCHEDULER"


class JobLost(ModuleSystemError):
    """The cluster did not bring the job's result back (scheduler gone, workers died)."""

    default_reason = "job_lost"


class _RemoteJobFuture(Future[JobResult]):
    """The runner's handle on a task: cancelling it (only possible before the job has
    started) cancels the task too."""

    def __init__(self, task: DaskFuture | None = None) -> None:
        super().__init__()
        self.task = task

    def cancel(self) -> bool:
        if not super().cancel():
            return False
        if self.task is not None:
            try:
                self.task.cancel()
            except Exception as exc:  # the scheduler is gone: nothing left to cancel
                log.debug("could not cancel task %s: %s", self.task.key, exc)
        return True


@dataclass
class _Tracked:
    job: JobSpec
    future: _RemoteJobFuture
    workers: list[str] = field(default_factory=list)  # one per attempt
    started: bool = False


class DaskJobExecutor:
    """Runs each job of a batch as a task on a Dask cluster."""

    def __init__(
        self,
        scheduler: str | None = None,
        *,
        local_workers: int | None = None,
        threads_per_worker: int = 1,
        connect_timeout: float = 30.0,
    ) -> None:
        if (scheduler is None) == (local_workers is None):
            raise ConfigError("the Dask executor needs a scheduler address or a number of "
                              "local workers (one of them)")  # fmt: skip
        self.scheduler, self.local_workers = scheduler, local_workers
        self.threads_per_worker, self.connect_timeout = threads_per_worker, connect_timeout
        self.placements: dict[str, list[str]] = {}  # job id -> worker of each attempt
        self.cancelled = threading.Event()  # set once the cluster was told to cancel
        self._client: Client | None = None
        self._cluster: LocalCluster | None = None
        self._batch: BatchContext | None = None
        self._fingerprint = fingerprint.installed()
        self._tracked: dict[str, _Tracked] = {}
        self._registries: dict[str, Registry] = {}
        self._lock = threading.Lock()
        self._logs = ClientLogs(None)
        self._cancel_name = ""
        self._subscribed = False

    # --- JobExecutor ----------------------------------------------------------------
    def start(self, batch: BatchContext) -> None:
        self._batch = batch
        if self.scheduler and batch.state.engine.dialect.name == "sqlite":
            raise ConfigError(
                f"the state store {mask_url(batch.state.url)} is an SQLite file on this "
                f"machine, which the workers of the Dask cluster at {self.scheduler} cannot "
                "share: use a PostgreSQL --state-url (or --local-workers)"
            )
        self._cancel_name = f"module_system-cancel-{batch.run_id}"
        self._logs = ClientLogs(batch.options.log_dir)
        self._client = self._connect()
        try:
            self._check_workers(self._client)
            self._install_plugins(self._client)
            self._client.subscribe_topic(TOPIC, self._on_event)
            self._subscribed = True
        except BaseException:
            self.shutdown()
            raise

    def submit(self, job: JobSpec) -> Future[JobResult]:
        assert self._client is not None and self._batch is not None, "start() first"
        future = _RemoteJobFuture()
        if self._client.status != "running":
            future.set_exception(JobLost("not started: the Dask scheduler is gone",
                                         reason="scheduler_lost"))  # fmt: skip
            return future
        batch = self._batch
        registry = self._registry_for(job.service_id)
        task = RemoteJob(job, registry, batch.state.url, batch.run_id, batch.options,
                         self._cancel_name, self._fingerprint)  # fmt: skip
        with self._lock:
            self._tracked[job.job_id] = tracked = _Tracked(job, future)
            self.placements[job.job_id] = tracked.workers
        key = f"module_system-{batch.run_id}-{job.job_id}"  # unique: never merged with another
        future.task = self._client.submit(run_remote_job, task, key=key, pure=False)
        future.task.add_done_callback(lambda task: self._settle(tracked, task))
        return future

    def _registry_for(self, service_id: str) -> Registry:
        """The registry with only this service: what a task carries stays small."""
        assert self._batch is not None
        registry = self._registries.get(service_id)
        if registry is None:
            full = self._batch.registry
            registry = full.model_copy(update={"services": {service_id: full.services[service_id]}})
            self._registries[service_id] = registry
        return registry

    def cancel(self) -> None:
        if self._client is None:
            return
        try:
            Event(self._cancel_name, client=self._client).set()
        except Exception as exc:  # the scheduler is gone: its tasks are gone too
            log.warning("could not tell the Dask cluster to cancel: %s", exc)
        self.cancelled.set()

    def shutdown(self) -> None:
        self._logs.close()
        client, cluster = self._client, self._cluster
        self._client = self._cluster = None
        if client is not None:
            if client.status == "running":
                self._forget(client)
            client.close(timeout=5)
        if cluster is not None:
            cluster.close(timeout=10)

    def _forget(self, client: Client) -> None:
        """Leave nothing of this batch on the scheduler (a set Event stays there until
        cleared); every job has ended by now."""
        if self._subscribed:
            client.unsubscribe_topic(TOPIC)
        if self.cancelled.is_set():
            try:
                Event(self._cancel_name, client=client).clear()
            except Exception as exc:
                log.debug("could not clear the cancel event: %s", exc)

    # --- set-up -----------------------------------------------------------------------
    def _connect(self) -> Client:
        if self.local_workers is not None:
            self._cluster = LocalCluster(
                n_workers=self.local_workers, threads_per_worker=self.threads_per_worker,
                processes=True, host="127.0.0.1", dashboard_address=None,
                silence_logs=logging.ERROR,
                # no dashboard; its small HTTP server (health checks) on any free port
                scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            )  # fmt: skip
            return Client(self._cluster, set_as_default=False)
        try:
            return Client(self.scheduler, timeout=self.connect_timeout, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {self.scheduler}: "
                              f"{redact(str(exc))}") from None  # fmt: skip

    def _check_workers(self, client: Client) -> None:
        """Every worker has the client's version and plugins, or nothing starts."""
        try:
            found = client.run(fingerprint.installed, on_error="return")
        except Exception as exc:
            raise ConfigError(
                "could not ask the Dask workers what they have installed (is module_system "
                f"{__version__} installed on each?): {exc}"
            ) from None
        problems = []
        for address, here in sorted(found.items()):
            if isinstance(here, BaseException):
                problems.append(f"worker {address}: cannot run module_system: {here!r}")
            else:
                problems += [f"worker {address}: {p}"
                             for p in fingerprint.differences(self._fingerprint, here)]  # fmt: skip
        if problems:
            raise ConfigError(["the Dask workers cannot run this batch:", *problems])
        if not found:
            log.warning("no Dask worker has joined the scheduler yet: jobs wait for workers")

    def _install_plugins(self, client: Client) -> None:
        try:
            client.register_plugin(ClusterLimits(), name=PLUGIN_NAME)
        except Exception as exc:
            raise ConfigError(
                f"the Dask scheduler cannot keep the cluster-wide rate limits (module_system "
                f"{__version__} must be installed where the scheduler runs): {exc}"
            ) from None
        try:
            client.register_plugin(WorkerSetup(self._fingerprint), name=WorkerSetup.name)
        except ConfigError as exc:
            raise ConfigError(["the Dask workers cannot run this batch:", *exc.problems]) from None
        except Exception as exc:
            raise ConfigError(f"could not set up the Dask workers: {exc}") from None

    # --- events and results -------------------------------------------------------------
    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        """A worker's message (on the client's event loop): keep it short, never raise."""
        message = event[1]
        if self._batch is None or message.get("run") != self._batch.run_id:
            return  # another batch's, on the same cluster
        try:
            kind = message.get("kind")
            if kind == "log":
                self._logs.replay(message)
            elif kind == "files":
                assert self._batch is not None
                apply_files(self._batch.stats, message)
            elif kind == "started":
                self._job_started(message)
        except Exception:
            log.exception("could not handle a message from a Dask worker")

    def _job_started(self, message: dict[str, Any]) -> None:
        with self._lock:
            tracked = self._tracked.get(str(message["job"]))
        if tracked is None:
            return
        tracked.workers.append(str(message["worker"]))
        if len(tracked.workers) > 1:
            log.warning("job %s restarted on %s: the worker running it was lost",
                        tracked.job.job_id, message["worker"])  # fmt: skip
        self._logs.job_started(tracked.job.job_id, tracked.job.service_id, message["module"])
        self._mark_started(tracked)

    def _mark_started(self, tracked: _Tracked) -> None:
        with self._lock:
            if tracked.started:
                return
            tracked.started = True
        if tracked.future.set_running_or_notify_cancel():
            assert self._batch is not None
            self._batch.stats.job_started()

    def _settle(self, tracked: _Tracked, task: DaskFuture) -> None:
        """The task ended (in a Dask callback thread): hand its result to the runner."""
        try:
            result: JobResult | None = task.result()
            error = None
        except BaseException as exc:
            result, error = None, _lost(exc)
        self._mark_started(tracked)  # also a job whose start message never reached us
        log_file = self._logs.job_ended(tracked.job.job_id)
        if tracked.future.cancelled():
            return  # cancelled before it started: the runner records it
        if result is None:
            tracked.future.set_exception(error or JobLost("no result"))
            return
        if log_file:
            result.log_file = log_file
        if len(tracked.workers) > 1:
            result.notes.append(f"restarted {len(tracked.workers) - 1} time(s): the worker "
                                "running it was lost (Dask ran the task again)")  # fmt: skip
        tracked.future.set_result(result)


def _lost(exc: BaseException) -> JobLost:
    text = redact(str(exc))
    if "scheduler-connection-lost" in text or "lost the connection" in text.lower():
        return JobLost("did not finish: the client lost the Dask scheduler; the job may have "
                       "landed some files (the state store knows which): run the batch again "
                       "to complete it", reason="scheduler_lost")  # fmt: skip
    if type(exc).__name__ == "KilledWorker":
        return JobLost(f"did not finish: every worker that ran it died ({text})",
                       reason="worker_lost")  # fmt: skip
    return JobLost(f"did not finish on the Dask cluster: {type(exc).__name__}: {text}",
                   reason="task_error")  # fmt: skip
