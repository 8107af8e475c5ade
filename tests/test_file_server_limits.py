"""FTP and SFTP sources within bounds: waits for a pooled connection end on cancel and at
the job's deadline, SFTP reads run only so far ahead, a plain-FTP password is warned
about, and errors carry the protocol's reason code. Real servers on loopback."""

from __future__ import annotations

import ftplib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from module_system.errors import ItemVanished, JobCancelled, TerminalError, TransientError
from module_system.results import JobStatus
from module_system.sources.connection_pool import ConnectionPool
from module_system.sources.sftp import READ_AHEAD
from module_system.sources.sftp_read_ahead import BLOCK
from tests.ftp_servers import (
    GOOD_CSV,
    PASSWORD,
    USER,
    FileServer,
    FtpServer,
    ftp_service,
    make_tree,
)
from tests.helpers import RunJob

Servers = Callable[..., FileServer]

# (a refused read, a file gone since the listing, a wrong password)
REASONS = {
    "ftp": ("ftp_550", "ftp_550", "ftp_530"),
    "sftp": ("sftp_permission_denied", "sftp_no_such_file", "sftp_login_refused"),
}


def test_errors_carry_the_protocols_reason(
    protocol: str, file_servers: Servers, ftp_root: Path, tmp_path: Path
) -> None:
    (ftp_root / "outgoing" / "locked").mkdir()  # both servers refuse to read under it
    (ftp_root / "outgoing" / "locked" / "secret.csv").write_bytes(GOOD_CSV)
    remote = file_servers(protocol, vanish="bad.csv")
    with remote.source() as source:
        items = {item.key: item for item in source.list_items()}
        with pytest.raises(TerminalError) as refused:
            source.fetch(items["locked/secret.csv"], tmp_path / "refused")
        with pytest.raises(ItemVanished) as gone:
            source.fetch(items["bad.csv"], tmp_path / "gone")
    with (
        remote.source(password="Wr0ng-Secret-Value") as source,
        pytest.raises(TerminalError) as login,
    ):
        list(source.list_items())
    reasons = (refused.value.reason, gone.value.reason, login.value.reason)
    assert reasons == REASONS[remote.protocol]


def test_ftp_421_is_retried_and_counted_by_its_code(
    ftp_server: Callable[..., FtpServer], run_job: RunJob
) -> None:
    server = ftp_server()
    server.server.max_cons_per_ip = 1  # a second connection is told "421 Too many"
    with ftplib.FTP() as taken:
        taken.connect("127.0.0.1", server.port, timeout=10)
        taken.login(USER, PASSWORD)
        job = run_job(ftp_service(server.port))
    assert job.status is JobStatus.FAILED
    assert "421" in (job.error or "")
    assert job.retries == {"ftp_421": 3}  # attempts: 4


# --- waiting for a pooled connection


def _ftp_login(port: int) -> ftplib.FTP:
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", port, timeout=10)
    ftp.login(USER, PASSWORD)
    return ftp


class _Waiter(threading.Thread):
    """Borrows a connection from ``pool`` and keeps what went wrong."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        super().__init__(daemon=True)
        self.pool, self.error, self.got = pool, None, False

    def run(self) -> None:
        try:
            with self.pool.connection():
                self.got = True
        except Exception as exc:
            self.error = exc


def _wait_while_taken(pool: ConnectionPool[Any], then: Callable[[], None]) -> _Waiter:
    """Hold the pool's only connection while another thread asks for one; ``then`` runs
    while it waits."""
    with pool.connection():
        waiter = _Waiter(pool)
        waiter.start()
        then()
        waiter.join(10)
    assert not waiter.is_alive(), "still waiting for a connection"
    return waiter


def test_pool_wait_ends_when_the_job_is_cancelled(ftp_server: Callable[..., FtpServer]) -> None:
    port = ftp_server().port
    cancel = threading.Event()
    pool = ConnectionPool(lambda: _ftp_login(port), ftplib.FTP.close, 1, cancel=cancel)
    waiter = _wait_while_taken(pool, cancel.set)
    assert isinstance(waiter.error, JobCancelled) and not waiter.got
    pool.close()


def test_pool_wait_ends_at_the_job_deadline(ftp_server: Callable[..., FtpServer]) -> None:
    port = ftp_server().port
    pool = ConnectionPool(lambda: _ftp_login(port), ftplib.FTP.close, 1, deadline=time.monotonic())
    waiter = _wait_while_taken(pool, lambda: None)
    assert isinstance(waiter.error, TransientError) and waiter.error.reason == "pool_timeout"
    with pool.connection():  # a free connection is still handed out
        pass
    pool.close()


def test_sources_wait_for_connections_within_the_jobs_cancel_and_deadline(
    remote: FileServer, tmp_path: Path
) -> None:
    cancel = threading.Event()
    with remote.source(cancel, max_connections=1) as source:
        item = next(item for item in source.list_items() if item.key == "bad.csv")
        fetch = _Fetch(source, item, tmp_path / "bad.csv")
        with source._pool.connection():  # another transfer holds the only connection
            fetch.start()
            cancel.set()
            fetch.join(10)
    assert isinstance(fetch.error, JobCancelled)
    with remote.source(deadline=time.monotonic(), max_connections=1) as source:
        item = next(item for item in source.list_items() if item.key == "bad.csv")
        fetch = _Fetch(source, item, tmp_path / "bad.csv")
        with source._pool.connection():
            fetch.start()
            fetch.join(10)
    assert isinstance(fetch.error, TransientError) and fetch.error.reason == "pool_timeout"


class _Fetch(threading.Thread):
    def __init__(self, source: Any, item: Any, dest: Path) -> None:
        super().__init__(daemon=True)
        self.source, self.item, self.dest, self.error = source, item, dest, None

    def run(self) -> None:
        try:
            self.source.fetch(self.item, self.dest)
        except Exception as exc:
            self.error = exc


# --- SFTP read-ahead


class _PeakRss:
    """The highest resident set size of this process while the block runs."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.start = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> _PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def big_tree(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "big-root"
    (root / "outgoing").mkdir(parents=True)
    with (root / "outgoing" / "big.bin").open("wb") as out:
        out.truncate(128 * 1024 * 1024)  # sparse: no disk, nor time, to write it
        out.seek(100 * 1024 * 1024)
        out.write(b"a marker in the middle")
    yield root


def test_sftp_reads_only_a_bounded_window_ahead_and_memory_stays_flat(
    file_servers: Servers, big_tree: Path, tmp_path: Path
) -> None:
    """The test server runs in this process and buffers whatever it has been asked for;
    asking for the whole file at once (paramiko's prefetch) grew RSS by the file's size."""
    server = file_servers("sftp", big_tree)
    dest = tmp_path / "big.bin"
    leads: list[int] = []  # how far each read request runs ahead of what was written

    def on_read(offset: int, size: int) -> None:
        leads.append(offset + size - (dest.stat().st_size if dest.exists() else 0))

    server.state["on_read"] = on_read
    with server.source(include=["*.bin"]) as source:
        (item,) = source.list_items()
        with _PeakRss() as rss:
            source.fetch(item, dest)
    assert dest.stat().st_size == item.size
    with dest.open("rb") as copy:
        copy.seek(100 * 1024 * 1024)
        assert copy.read(22) == b"a marker in the middle"
    assert max(leads) <= (READ_AHEAD + 2) * BLOCK
    assert rss.peak - rss.start < 48 * 1024 * 1024


def test_sftp_short_reads_are_asked_again(file_servers: Servers, tmp_path: Path) -> None:
    body = b"".join(b"%08d," % i for i in range(40_000))  # 360 KB: many requests
    tree = make_tree(tmp_path / "short", {"outgoing/rows.csv": body})
    server = file_servers("sftp", tree, max_read=1000)  # the protocol allows short reads
    with server.source() as source:
        (item,) = source.list_items()
        source.fetch(item, tmp_path / "rows.csv")
    assert (tmp_path / "rows.csv").read_bytes() == body


# --- plain FTP with a password


def _clear_text_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "password in clear text" in r.getMessage()]


def test_plain_ftp_with_a_password_is_warned_about_once_per_job(
    ftp_server: Callable[..., FtpServer], run_job: RunJob, caplog: pytest.LogCaptureFixture
) -> None:
    server = ftp_server()
    with caplog.at_level(logging.WARNING, logger="module_system.sources"):
        job = run_job(ftp_service(server.port))  # 5 files on up to 4 connections
    assert job.status is JobStatus.COMPLETED, job.error
    (warning,) = _clear_text_warnings(caplog)
    assert warning.levelno == logging.WARNING and f"127.0.0.1:{server.port}" in warning.getMessage()
    assert PASSWORD not in caplog.text


def test_no_clear_text_warning_for_ftps_or_anonymous(
    ftp_server: Callable[..., FtpServer], run_job: RunJob, tls_files: dict[str, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    server = ftp_server("explicit")
    with caplog.at_level(logging.WARNING, logger="module_system.sources"):
        job = run_job(ftp_service(server.port, tls="explicit", ca_file=str(tls_files["ca"])))
        anonymous = FileServer("ftp", server.port, server.state)
        anonymous.source(username="anonymous", password="guest@example.com").close()
    assert job.status is JobStatus.COMPLETED, job.error
    assert not _clear_text_warnings(caplog)
