"""The ``module-system`` command: thin commands over :mod:`module_system.api`."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.logging import RichHandler

from module_system import api
from module_system._optional import missing_extra_for
from module_system.config import BatchFile, Registry
from module_system.errors import ConfigError
from module_system.observability.logging import DEFAULT_LOG_DIR, setup_logging
from module_system.observability.redaction import redact
from module_system.orchestrator.choice import make_executor
from module_system.orchestrator.monitor import Monitor
from module_system.orchestrator.report import print_summary, write_report
from module_system.orchestrator.rerun import NothingToRerun, rerun_batch, rerun_batch_file
from module_system.orchestrator.stats import BatchStats
from module_system.pipeline import RunOptions
from module_system.state.store import StateStore

EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130


def _console_handler(console: Console) -> logging.Handler:
    # Log lines print above the live display instead of tearing it.
    return RichHandler(console=console, show_time=False, show_level=False, show_path=False,
                       markup=False, rich_tracebacks=False, highlighter=None)  # fmt: skip


def _config_error(exc: ConfigError) -> None:
    click.echo(f"configuration error ({len(exc.problems)} problem(s)):", err=True)
    for problem in exc.problems:
        click.echo(f"  {redact(problem)}", err=True)
    sys.exit(EXIT_CONFIG)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="module_system")
def main() -> None:
    """Fetch files from S3, FTP/SFTP, web pages and REST APIs, validate them and land
    them in an S3 bucket."""


@main.command()
@click.option("--batch-file", type=click.Path(dir_okay=False), help="JSON batch of jobs.")
@click.option(
    "--rerun-failed",
    metavar="RUN_ID",
    help="Instead of a batch file: the failed, timed-out and cancelled jobs of run RUN_ID.",
)
@click.option(
    "--registry",
    type=click.Path(dir_okay=False),
    help="project_registry.yaml (default: ./project_registry.yaml).",
)
@click.option(
    "--max-workers",
    default=20,
    show_default=True,
    type=click.IntRange(1, 512),
    help="Jobs run at once.",
)
@click.option(
    "--monitor-duration",
    default=30,
    show_default=True,
    type=click.IntRange(0),
    help="Seconds of live display; then a status line every 30 s.",
)
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the results as JSON here.",
)
@click.option(
    "--state-url",
    envvar="MODULE_SYSTEM_STATE_URL",
    help="SQLAlchemy URL of the state store (default: sqlite:///module_system_state.db).",
)
@click.option(
    "--full-refresh", is_flag=True, help="Ignore what earlier runs landed; land everything again."
)
@click.option(
    "--fail-on-invalid",
    is_flag=True,
    help="Fail a job (and exit 1) when any of its files was quarantined.",
)
@click.option(
    "--job-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds before a job times out (overrides the service's timeout).",
)
@click.option(
    "--log-dir",
    default=str(DEFAULT_LOG_DIR),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option(
    "--wait-for-lease",
    is_flag=True,
    help="When another run is running a service, wait for it instead of failing the job.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    help="Serve Prometheus metrics at http://HOST:PORT/metrics while the run goes.",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address for them.")
@click.option(
    "--executor",
    type=click.Choice(["threads", "dask"]),
    default="threads",
    show_default=True,
    help="Where jobs run: a thread pool here, or a Dask cluster (docs/scale-out.md).",
)
@click.option(
    "--scheduler",
    envvar="MODULE_SYSTEM_DASK_SCHEDULER",
    metavar="ADDRESS",
    help="Dask scheduler of --executor dask, e.g. tcp://10.0.0.5:8786.",
)
@click.option(
    "--local-workers",
    type=click.IntRange(1, 256),
    help="With --executor dask: start a local cluster of N worker processes instead.",
)
@click.pass_context
def run(ctx: click.Context, batch_file: str | None, rerun_failed: str | None, registry: str | None,
        max_workers: int, monitor_duration: int, report: Path | None, state_url: str | None,
        full_refresh: bool, fail_on_invalid: bool, job_timeout: float | None, log_dir: Path,
        wait_for_lease: bool, metrics_port: int | None, metrics_host: str, executor: str,
        scheduler: str | None, local_workers: int | None) -> None:  # fmt: skip
    """Run every job of a batch file.

    \b
    Example:
      module-system run --batch-file jobs.json --registry project_registry.yaml --max-workers 10
      module-system run --rerun-failed 20260301T080000Z-1a2b3c4d

    Exit status: 0 all jobs completed, 1 some job failed or was cancelled, 2 bad config.
    """
    if (batch_file is None) == (rerun_failed is None):
        raise click.UsageError("give either --batch-file or --rerun-failed RUN_ID")
    scheduler = _dask_scheduler(ctx, executor, scheduler, local_workers)
    console = Console()
    setup_logging(log_dir, console_handler=_console_handler(console))
    options = RunOptions(full_refresh, fail_on_invalid, job_timeout, log_dir=log_dir,
                         wait_for_lease=wait_for_lease)  # fmt: skip
    stats = BatchStats()
    try:
        # config errors stop before the monitor
        loaded, batch, batch_name = _batch_to_run(registry, batch_file, rerun_failed, state_url)
        metrics = _metrics_server(metrics_host, metrics_port, state_url, console)
        runner = make_executor(executor, max_workers=max_workers, scheduler=scheduler,
                               local_workers=local_workers)  # fmt: skip
        with metrics, Monitor(stats, console, monitor_duration):
            result = api.run_checked(loaded, batch, batch_name, max_workers=max_workers,
                                     state_url=state_url, options=options, stats=stats,
                                     executor=runner)  # fmt: skip
    except ConfigError as exc:
        _config_error(exc)
        return
    except NothingToRerun as exc:
        click.echo(f"{exc}: nothing to re-run")
        sys.exit(0)
    except KeyboardInterrupt:  # before any job started; during the run it is handled inside
        click.echo("interrupted before any job started", err=True)
        sys.exit(EXIT_INTERRUPTED)
    print_summary(result, console)
    if report:
        write_report(result, report)
        console.print(f"report written to {report}", highlight=False)
    sys.exit(result.exit_code(fail_on_invalid))


def _dask_scheduler(
    ctx: click.Context, executor: str, scheduler: str | None, local_workers: int | None
) -> str | None:
    """The scheduler address to use, after checking the executor options fit together."""
    typed = ctx.get_parameter_source("scheduler") is click.core.ParameterSource.COMMANDLINE
    if executor == "threads":
        if local_workers is not None or typed:
            raise click.UsageError("--scheduler and --local-workers need --executor dask")
        return None
    if local_workers is not None:
        if typed:
            raise click.UsageError("give --scheduler or --local-workers, not both")
        return None  # a MODULE_SYSTEM_DASK_SCHEDULER in the environment does not apply
    if not scheduler:
        raise click.UsageError("--executor dask needs --scheduler ADDRESS (or "
                               "MODULE_SYSTEM_DASK_SCHEDULER) or --local-workers N")  # fmt: skip
    return scheduler


def _batch_to_run(
    registry: str | None, batch_file: str | None, rerun_of: str | None, state_url: str | None
) -> tuple[Registry, BatchFile, str]:
    """The registry, the batch and the name the run records for it."""
    if rerun_of is None:
        loaded, batch = api.check(registry, batch_file)
        assert batch is not None and batch_file is not None
        return loaded, batch, batch_file
    loaded, _ = api.check(registry)
    store = StateStore(state_url)
    try:
        return loaded, rerun_batch(store.engine, rerun_of, loaded), rerun_batch_file(rerun_of)
    finally:
        store.close()


@contextlib.contextmanager
def _metrics_server(
    host: str, port: int | None, state_url: str | None, console: Console
) -> Iterator[None]:
    """Serve the state store's Prometheus metrics while the run goes (when asked)."""
    if port is None:
        yield
        return
    try:
        from module_system.observability.metrics import metrics_registry, serve_metrics
        from module_system.state.queries import metrics_snapshot
    except ModuleNotFoundError as exc:
        raise missing_extra_for(exc, "--metrics-port") or exc from None
    store = StateStore(state_url)
    try:
        stop = serve_metrics(metrics_registry(lambda: metrics_snapshot(store.engine)), host, port)
    except OSError as exc:
        store.close()
        raise ConfigError(
            f"--metrics-port {port}: cannot listen on {host}: {exc.strerror}"
        ) from None
    console.print(f"metrics: http://{host}:{port}/metrics", highlight=False)
    try:
        yield
    finally:
        stop()
        store.close()


@main.command()
@click.option("--registry", type=click.Path(dir_okay=False), help="project_registry.yaml to check.")
@click.option("--batch-file", type=click.Path(dir_okay=False), help="Also check this batch file.")
def check(registry: str | None, batch_file: str | None) -> None:
    """Check the registry (and a batch file) without running anything.

    \b
    Example:
      module-system check --registry project_registry.yaml --batch-file jobs.json
    """
    try:
        loaded, batch = api.check(registry, batch_file)
    except ConfigError as exc:
        _config_error(exc)
        return
    jobs = f", {len(batch.jobs)} jobs" if batch else ""
    click.echo(f"OK: {len(loaded.services)} services{jobs}")


@main.command()
@click.option("--registry", help="project_registry.yaml, or an s3:// or https:// URL of it.")
@click.option("--state-url", envvar="MODULE_SYSTEM_STATE_URL", help="State store URL.")
@click.option(
    "--log-dir",
    default=str(DEFAULT_LOG_DIR),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Dashboard address.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--token",
    envvar="MODULE_SYSTEM_DASHBOARD_TOKEN",
    help="Dashboard token (needed to bind beyond loopback).",
)
@click.option("--no-dashboard", is_flag=True, help="Run the schedules only.")
def serve(registry: str | None, state_url: str | None, log_dir: Path, host: str, port: int,
          token: str | None, no_dashboard: bool) -> None:  # fmt: skip
    """Run services on their `schedule:`, with the dashboard beside them.

    Never two jobs of one service at once; a run missed while nothing was serving runs once
    at start-up. Ctrl-C stops; running jobs finish first.

    \b
    Example:
      module-system serve --registry project_registry.yaml   # http://127.0.0.1:8765/
    """
    from module_system.scheduler.serve import ServeOptions
    from module_system.scheduler.serve import serve as serve_schedules

    setup_logging(log_dir, console_handler=_console_handler(Console()))
    local = None if registry and "://" in registry else registry
    try:
        dashboard = (
            None if no_dashboard else _dashboard(state_url, local, log_dir, host, port, token)
        )
        serve_schedules(ServeOptions(registry, state_url, log_dir), dashboard)
    except ConfigError as exc:
        _config_error(exc)


def _dashboard(state_url: str | None, registry: str | None, log_dir: Path, host: str, port: int,
               token: str | None) -> Callable[[], None] | None:  # fmt: skip
    """The dashboard's serve loop, or None (with a note) when it is not installed."""
    try:
        from module_system.dashboard import DashboardSettings
        from module_system.dashboard import serve as serve_dashboard
    except ModuleNotFoundError as exc:
        missing = missing_extra_for(exc, "the dashboard")
        if missing is None:
            raise
        logging.getLogger(__name__).warning("%s; serving the schedules only", missing)
        return None
    registry_path = Path(registry) if registry else None
    settings = DashboardSettings(state_url=state_url, registry_path=registry_path,
                                 log_dir=log_dir, host=host, port=port, token=token)  # fmt: skip
    settings.check()  # before the schedules start: a bad token or address stops here
    return lambda: serve_dashboard(settings)


@main.command()
@click.option(
    "--installed",
    is_flag=True,
    help="Generate it from the installed source types and validators (plugins too).",
)
def schema(installed: bool) -> None:
    """Print the JSON Schema (2020-12) of project_registry.yaml, for editors and CI.

    \b
    Example:
      module-system schema > registry.schema.json
      # then, as the registry's first line:
      # yaml-language-server: $schema=registry.schema.json
    """
    from module_system.config import schema as registry_schema

    try:
        document = registry_schema.generate() if installed else registry_schema.shipped()
    except ConfigError as exc:  # --installed without the extra a source type needs
        _config_error(exc)
        return
    click.echo(registry_schema.dumps(document), nl=False)


@main.command()
@click.option("--state-url", envvar="MODULE_SYSTEM_STATE_URL", help="State store URL.")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1))
def history(state_url: str | None, limit: int) -> None:
    """List recent runs and their jobs from the state store."""
    from module_system.state.store import StateStore

    try:
        store = StateStore(state_url)
    except ConfigError as exc:
        _config_error(exc)
        return
    for run_row in store.runs(limit):
        click.echo(f"{run_row['run_id']}  {run_row['status']:<11} {run_row['description']}")
        for job in store.jobs(run_row["run_id"]):
            counts = job["counts"] or {}
            tallies = " ".join(
                f"{k}={counts.get(k, 0)}" for k in ("valid", "invalid", "skipped", "failed")
            )
            click.echo(f"    {job['job_id']:<30} {job['status']:<10} {tallies}")
    store.close()


@main.command()
@click.option("--state-url", envvar="MODULE_SYSTEM_STATE_URL", help="State store URL.")
@click.option(
    "--registry",
    type=click.Path(dir_okay=False, path_type=Path),
    help="project_registry.yaml: lists services that never ran; needed for re-runs.",
)
@click.option(
    "--log-dir",
    default=str(DEFAULT_LOG_DIR),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Job logs shown on job pages; re-runs log here.",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind; beyond loopback a token is required.",
)
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--token",
    envvar="MODULE_SYSTEM_DASHBOARD_TOKEN",
    help="Required on every request (prefer $MODULE_SYSTEM_DASHBOARD_TOKEN).",
)
def dashboard(state_url: str | None, registry: Path | None, log_dir: Path, host: str,
              port: int, token: str | None) -> None:  # fmt: skip
    """Serve the web dashboard: runs, jobs and files, live; /metrics for Prometheus.

    \b
    Example:
      module-system dashboard --registry project_registry.yaml   # http://127.0.0.1:8765/
    """
    try:
        from module_system.dashboard import DashboardSettings, serve
    except ModuleNotFoundError as exc:
        _config_error(missing_extra_for(exc, "the dashboard") or ConfigError(str(exc)))
        return
    settings = DashboardSettings(state_url=state_url, registry_path=registry, log_dir=log_dir,
                                 host=host, port=port, token=token or None)  # fmt: skip
    console = Console()
    setup_logging(log_dir, console_handler=_console_handler(console))  # for re-runs
    shown = f"[{host}]" if ":" in host else host
    console.print(f"Dashboard: http://{shown}:{port}/  (Ctrl-C stops it)", highlight=False)
    try:
        serve(settings)
    except ConfigError as exc:
        _config_error(exc)


@main.command()
@click.option("--state-url", envvar="MODULE_SYSTEM_STATE_URL", help="State store URL.")
@click.option(
    "--older-than",
    required=True,
    metavar="AGE",
    help="Delete runs that started longer ago than this: 90d, 12h, 2w.",
)
@click.option("--dry-run", is_flag=True, help="Only count what would be deleted.")
def prune(state_url: str | None, older_than: str, dry_run: bool) -> None:
    """Delete old runs, their jobs and file records. What landed stays known: the next run
    is still incremental.

    \b
    Example:
      module-system prune --older-than 90d
    """
    from module_system.state.queries import parse_age, prune_runs

    try:
        age = parse_age(older_than)
        store = StateStore(state_url)
    except ConfigError as exc:
        _config_error(exc)
        return
    try:
        result = prune_runs(store.engine, datetime.now(UTC) - age, dry_run=dry_run)
    finally:
        store.close()
    verb = "would delete" if dry_run else "deleted"
    click.echo(f"{verb} {result.runs} runs, {result.jobs} jobs, {result.files} file records "
               f"(runs started before {older_than} ago)")  # fmt: skip


@main.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the demo's files here.",
)
@click.option("--serve", is_flag=True, help="Then keep the servers and the dashboard up (Ctrl-C).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535),
              help="The dashboard's port, with --serve.")  # fmt: skip
def demo(workdir: Path | None, serve: bool, port: int) -> None:
    """Start local servers with sample data, run the demo batch and show where files landed."""
    from module_system.demo import run_demo

    sys.exit(run_demo(workdir, serve=serve, port=port))


if __name__ == "__main__":  # pragma: no cover
    main()
