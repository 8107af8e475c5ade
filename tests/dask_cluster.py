"""A real Dask cluster on loopback for the Dask executor's tests: a ``dask scheduler`` and
``dask worker`` processes (no nanny, one thread each) started on free ports, which a test
can SIGKILL one by one; and an HTTP proxy in front of the S3 server that holds chosen
requests until the test lets them go, so a test knows a job is in the middle of its files.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from distributed import Client

from module_system.demo.servers import DEMO_CREDENTIALS, free_port

DASK = str(Path(sys.executable).parent / "dask")
SCRUBBED = ("AWS_", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "MODULE_SYSTEM_")


def worker_environment(tmp: Path) -> dict[str, str]:
    """What the test's own processes get: demo credentials, nothing from the machine."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(SCRUBBED)}
    env.update(DEMO_CREDENTIALS)
    env.update(AWS_CONFIG_FILE=str(tmp / "no-aws-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp / "no-aws-credentials"),
               AWS_EC2_METADATA_DISABLED="true")  # fmt: skip
    return env


class DaskCluster:
    """One scheduler and named workers, each a process of its own."""

    def __init__(self, tmp: Path) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp  # logs, and the workers' working directory (no checkout there)
        self.env = worker_environment(tmp)
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, tuple[subprocess.Popen[bytes], str]] = {}

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"{name}.log").open("ab")
        return subprocess.Popen([DASK, *args], cwd=self.tmp, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT)  # fmt: skip

    def start(self, workers: int = 2) -> DaskCluster:
        # idle-timeout: a scheduler left behind by a killed test run ends (its workers follow)
        args = ["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard",
                "--idle-timeout", "300s"]  # fmt: skip
        self.scheduler = self._spawn("scheduler", args)
        for n in range(workers):
            self.start_worker(f"w{n}")
        self.wait_for_workers(workers)
        return self

    def start_worker(self, name: str) -> str:
        port = free_port()
        process = self._spawn(name, [
            "worker", self.address, "--name", name, "--host", "127.0.0.1",
            "--worker-port", str(port), "--nthreads", "1", "--nworkers", "1", "--no-nanny",
            "--no-dashboard", "--death-timeout", "5",
        ])  # fmt: skip
        address = f"tcp://127.0.0.1:{port}"
        self.workers[name] = (process, address)
        return address

    def client(self) -> Client:
        return Client(self.address, timeout=20, set_as_default=False)

    def wait_for_workers(self, count: int) -> None:
        with self.client() as client:
            client.wait_for_workers(count, timeout=60)

    def kill_worker_at(self, address: str) -> None:
        """SIGKILL the worker process listening at ``address``."""
        name = next(n for n, (_, a) in self.workers.items() if a == address)
        process, _ = self.workers.pop(name)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def kill_scheduler(self) -> None:
        assert self.scheduler is not None
        self.scheduler.send_signal(signal.SIGKILL)
        self.scheduler.wait(10)

    def stop(self) -> None:
        processes = [p for p, _ in self.workers.values()]
        processes += [self.scheduler] if self.scheduler else []
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait(10)
        self.workers.clear()


@contextmanager
def dask_cluster(tmp: Path, workers: int = 2) -> Iterator[DaskCluster]:
    cluster = DaskCluster(tmp)
    try:
        yield cluster.start(workers)
    finally:
        cluster.stop()


class GateProxy:
    """An HTTP proxy to ``upstream`` that holds each request ``hold(method, path)`` picks
    until :meth:`release`; :meth:`wait_held` waits until ``n`` requests are held."""

    def __init__(self, upstream: str, hold: Callable[[str, str], bool]) -> None:
        self.upstream = urlsplit(upstream)
        self.hold = hold
        self.released = threading.Event()
        self.held = 0
        self._changed = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.server.handle_error = lambda *args: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_held(self, count: int, timeout: float = 60) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: self.held >= count, timeout):
                raise TimeoutError(f"{self.held} requests held, waited for {count}")

    def release(self) -> None:
        self.released.set()

    def _wait_if_held(self, method: str, path: str) -> None:
        if self.released.is_set() or not self.hold(method, path):
            return
        with self._changed:
            self.held += 1
            self._changed.notify_all()
        self.released.wait(120)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                proxy._wait_if_held(self.command, self.path)
                upstream = http.client.HTTPConnection(proxy.upstream.hostname or "",
                                                      proxy.upstream.port)  # fmt: skip
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                dropped: tuple[str, ...] = ("transfer-encoding", "connection")
                if self.command != "HEAD":  # HEAD keeps the upstream's Content-Length
                    dropped += ("content-length",)
                    self.send_header("Content-Length", str(len(data)))
                for key, value in response.getheaders():
                    if key.lower() not in dropped:
                        self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

        return Handler


@contextmanager
def gate_proxy(upstream: str, hold: Callable[[str, str], bool]) -> Iterator[GateProxy]:
    proxy = GateProxy(upstream, hold)
    thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.release()
        proxy.server.shutdown()
        proxy.server.server_close()


def wait_until(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)
