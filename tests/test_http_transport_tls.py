"""TLS through the pinned transport: the one SSL context a client is given verifies the
server's certificate against the host name (not the pinned address), with the CA bundle
from the environment, as httpx's default does."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import trustme

from module_system.errors import TransientError
from module_system.sources.http.client import translate_errors
from module_system.sources.http.egress import EgressPolicy
from module_system.sources.http.transport import make_client
from tests import egress_helpers
from tests.egress_helpers import StubDns

NAME = "tls-site.test"
dns, connections = egress_helpers.dns, egress_helpers.connections


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello over TLS"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(NAME).configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _get(port: int) -> httpx.Response:
    """GET the server by name; the stub DNS and the connection guard keep it on loopback."""
    url = f"https://{NAME}:{port}/"
    with make_client(EgressPolicy.build([url], [url]), timeout=5) as client:
        return client.get(url)


def test_certificate_checked_against_the_name_with_the_environment_ca(
    tls_server: int,
    ca: trustme.CA,
    dns: StubDns,
    connections: list[tuple[str, int]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dns.table[NAME] = ["127.0.0.1"]
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    response = _get(tls_server)
    assert response.status_code == 200 and response.content == b"hello over TLS"
    assert connections == [("127.0.0.1", tls_server)]  # the pinned address, the name's cert


def test_a_certificate_from_an_unknown_ca_is_refused(
    tls_server: int,
    dns: StubDns,
    connections: list[tuple[str, int]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dns.table[NAME] = ["127.0.0.1"]
    bundle = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"), translate_errors("GET"):
        _get(tls_server)
