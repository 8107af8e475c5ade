"""An HTTP proxy in front of the S3 server that fails chosen requests: it answers
503 SlowDown or drops the connection, like a struggling S3 endpoint."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)

ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied</Message></Error>"
)

BAD_CHECKSUM = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="

# Decides per request: None to forward, "503" to answer SlowDown, "drop" to hang up,
# "truncate" to send the headers and half the body, then hang up, "bad_checksum" to
# forward but report a wrong SHA-256 back (as a corrupted upload would look), "403" to
# answer AccessDenied, "bad_part_checksum" to add a wrong SHA-256 to an UploadPartCopy's
# result (as S3 reports each copied part's checksum; moto reports none).
FaultRule = Callable[[str, str, int], str | None]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # dropped connections are the point


class FaultyProxy:
    def __init__(self, upstream: str, rule: FaultRule) -> None:
        self.upstream = urlsplit(upstream)
        self.rule = rule
        self.count = 0
        self.faults = 0
        self.seen: list[tuple[str, str, str]] = []  # every request's method, path, User-Agent
        self.copies: list[str] = []  # paths of the requests that copy (x-amz-copy-source)
        self._lock = threading.Lock()
        self.server = _QuietServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _decide(self, method: str, path: str, user_agent: str = "") -> str | None:
        with self._lock:
            self.count += 1
            self.seen.append((method, path, user_agent))
            fault = self.rule(method, path, self.count)
            self.faults += fault is not None
            return fault

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _relay(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.headers.get("x-amz-copy-source"):
                    proxy.copies.append(self.path)
                fault = proxy._decide(self.command, self.path, self.headers.get("User-Agent", ""))
                if fault == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if fault == "503" or (fault == "truncate" and self.command != "GET"):
                    self._error(503, SLOW_DOWN)
                    return
                if fault == "403":
                    self._error(403, ACCESS_DENIED)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                if fault == "bad_part_checksum":
                    extra = f"<ChecksumSHA256>{BAD_CHECKSUM}</ChecksumSHA256>".encode()
                    data = data.replace(b"</ETag>", b"</ETag>" + extra, 1)
                self.send_response(response.status)
                dropped = ("transfer-encoding", "connection")
                if self.command != "HEAD":  # HEAD keeps the upstream's Content-Length
                    dropped += ("content-length",)
                    self.send_header("Content-Length", str(len(data)))
                for key, value in response.getheaders():
                    if fault == "bad_checksum" and key.lower() == "x-amz-checksum-sha256":
                        value = BAD_CHECKSUM
                    if key.lower() not in dropped:
                        self.send_header(key, value)
                self.end_headers()
                if fault == "truncate":
                    self.wfile.write(data[: len(data) // 2])
                    self.close_connection = True
                elif self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            def _error(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _relay

        return Handler


@contextmanager
def faulty_proxy(upstream: str, rule: FaultRule) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(upstream, rule)
    thread = threading.Thread(target=proxy.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.server.shutdown()
        proxy.server.server_close()
