"""Test helpers for the egress policy: a DNS stub, a guard that records every TCP connection
the process opens (and fails any to a non-loopback address, so no test can leak a packet
beyond 127.0.0.0/8), and a recording HTTP server for "another origin" on 127.0.0.2.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from module_system.sources.http import egress


@dataclass
class StubDns:
    """Answers from ``table``; any other name fails as an unknown name would."""

    table: dict[str, list[str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: not in the test's DNS table")
        return list(self.table[host])


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> StubDns:
    """Stub name resolution of the HTTP layer (``egress.resolve``)."""
    stub = StubDns()
    monkeypatch.setattr(egress, "resolve", stub)
    return stub


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every ``socket.create_connection`` address; one that is not a loopback IP literal
    (a name, or any other address) fails the test before a packet is sent."""
    made: list[tuple[str, int]] = []
    real = socket.create_connection

    def guarded(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        made.append(address)
        try:
            loopback = ipaddress.ip_address(address[0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise AssertionError(f"a test tried to connect to {address}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)
    return made


def deny(monkeypatch: pytest.MonkeyPatch, network: str) -> None:
    """Add a loopback deny entry, standing in for the metadata and link-local ranges."""
    entries = [*egress.DENIED_NETWORKS, (ipaddress.ip_network(network), "a test deny entry")]
    monkeypatch.setattr(egress, "DENIED_NETWORKS", entries)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]


class OriginServer:
    """A recording HTTP server on a loopback address with fixed answers per path
    (``routes[path] = (status, headers, body)``; anything else is a 404)."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, 0), _handler(self))
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"

    def __enter__(self) -> OriginServer:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def answer(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.requests.append(Recorded(path, headers))
        return self.routes.get(path, (404, {"Content-Type": "text/plain"}, b"not found"))


def _handler(origin: OriginServer) -> Any:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, out, body = origin.answer(self.path, headers)
            self.send_response(status)
            for name, value in out.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def other_origin() -> Iterator[OriginServer]:
    with OriginServer("127.0.0.2") as server:
        yield server
