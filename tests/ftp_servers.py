"""Real FTP, FTPS and SFTP servers on loopback for tests (port 0), each in a thread.

- :class:`FtpServer` runs pyftpdlib with one of several handler flavours: plain (MLSD),
  without MLSD (Unix LIST), DOS-format LIST, FTPS explicit (AUTH TLS) and implicit, and
  one that drops the connection mid-transfer.
- :class:`SftpServer` runs asyncssh's SFTP server with a generated host key, password
  and public-key logins, rooted at a folder.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import threading
import time
from pathlib import Path
from typing import Any

import asyncssh
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

USER, PASSWORD = "alice", "s3cret-Pa55word"

SALES_SCHEMA = {
    "fields": [
        {"name": "id", "type": "integer", "constraints": {"required": True, "unique": True}},
        {"name": "amount", "type": "number", "constraints": {"minimum": 0}},
        {"name": "day", "type": "date"},
    ]
}
GOOD_CSV = b"id,amount,day\n1,10.50,2026-11-01\n2,0,2026-11-02\n"
BAD_CSV = b"id,amount,day\n1,-5,2026-11-01\n1,x,2026-13-01\n"

TREE = {
    "outgoing/2026-11-01.csv": GOOD_CSV,
    "outgoing/nested/deep/2026-11-02.csv": GOOD_CSV.replace(b"10.50", b"11.00"),
    "outgoing/with space é.csv": GOOD_CSV.replace(b"10.50", b"12.00"),
    "outgoing/bad.csv": BAD_CSV,
    "outgoing/archive.csv.gz": None,  # filled with gzip of GOOD_CSV
    "outgoing/README.txt": b"not matched by include",
}


def make_tree(root: Path, files: dict[str, bytes | None] | None = None) -> Path:
    for name, body in (files or TREE).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(GOOD_CSV) if body is None else body)
    return root


def ftp_service(
    port: int, type_: str = "ftp", validation: bool = True, **source: Any
) -> dict[str, Any]:
    block: dict[str, Any] = {
        "host": "127.0.0.1", "port": port, "username": USER, "password": PASSWORD,
        "path": "/outgoing", "include": ["*.csv", "*.csv.gz"],
        "connect_timeout": 10, "data_timeout": 10,
    }  # fmt: skip
    block.update(source)
    service: dict[str, Any] = {
        "type": type_,
        "source": block,
        "retry": {"attempts": 4, "backoff": 0.01, "max_backoff": 0.05},
        "concurrency": 4,
    }
    if validation:
        service["validation"] = {"csv": {"table_schema": SALES_SCHEMA}}
    return service


class DosListingFS(AbstractedFS):
    """LIST output as IIS writes it: ``01-15-26  03:04PM  <DIR>  name``."""

    def format_list(self, basedir: str, listing: list[str], ignore_err: bool = True) -> Any:
        for name in listing:
            st = os.stat(os.path.join(basedir, name))
            stamp = time.strftime("%m-%d-%y  %I:%M%p", time.gmtime(st.st_mtime))
            size = "<DIR>         " if os.path.isdir(os.path.join(basedir, name)) else st.st_size
            yield f"{stamp} {size:>20} {name}\r\n".encode(self.cmd_channel.encoding)


class DroppingDTPHandler(DTPHandler):
    """Sends ``drop_after`` bytes of the first ``drops`` downloads, then closes both the
    data and the control connection, like a server that crashed or a cut network."""

    def send(self, data: bytes) -> int:
        state = self.cmd_channel.state
        limit = state["drop_after"]
        if state["drops"] > 0 and self.tot_bytes_sent + len(data) >= limit:
            state["drops"] -= 1
            sent = super().send(data[: max(0, limit - self.tot_bytes_sent)])
            self.cmd_channel.ioloop.call_later(0, self._drop)
            return sent
        return super().send(data)

    def _drop(self) -> None:
        self.close()
        self.cmd_channel.close()


def _handler_class(kind: str, root: Path, certfile: Path | None) -> type[FTPHandler]:
    authorizer = DummyAuthorizer()
    authorizer.add_user(USER, PASSWORD, str(root), perm="elr")
    for locked in root.rglob("locked"):  # listable, but RETR is refused: unreadable files
        authorizer.override_perm(USER, str(locked), perm="el", recursive=True)
    base: type[FTPHandler] = TLS_FTPHandler if kind in ("explicit", "implicit") else FTPHandler
    attrs: dict[str, Any] = {
        "authorizer": authorizer,
        "state": {"commands": [], "drops": 0, "drop_after": 0},
        "banner": f"test server ({kind})",
        "timeout": 30,
    }
    if kind == "nomlsd":
        attrs["proto_cmds"] = {k: v for k, v in FTPHandler.proto_cmds.items()
                               if k not in ("MLSD", "MLST")}  # fmt: skip
    if kind == "dos":
        attrs["proto_cmds"] = {k: v for k, v in FTPHandler.proto_cmds.items()
                               if k not in ("MLSD", "MLST", "MDTM")}  # fmt: skip
        attrs["abstracted_fs"] = DosListingFS
    if kind == "dropping":
        attrs["dtp_handler"] = DroppingDTPHandler
        attrs["use_sendfile"] = False  # sendfile() would bypass DTPHandler.send
    if base is TLS_FTPHandler:
        attrs.update(certfile=str(certfile), keyfile=str(certfile), ssl_context=None,
                     tls_control_required=True, tls_data_required=True)  # fmt: skip
    if kind == "implicit":
        attrs["handle"] = _implicit_handle
        attrs["handle_ssl_established"] = _implicit_greeting
    cls = type(f"{kind.title()}Handler", (_Recording, base), attrs)
    return cls


def _implicit_handle(self: Any) -> None:
    self.secure_connection(self.ssl_context)  # TLS first, the 220 greeting after


def _implicit_greeting(self: Any) -> None:
    TLS_FTPHandler.handle(self)


class _Recording:
    """Remembers every command (without PASS arguments) for assertions."""

    state: dict[str, Any]

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        self.state["commands"].append(cmd if cmd == "PASS" else f"{cmd} {arg}".strip())
        vanish = self.state.get("vanish")
        if cmd == "RETR" and vanish and arg.endswith(vanish):  # deleted after the listing
            Path(self.fs.ftp2fs(arg)).unlink(missing_ok=True)  # type: ignore[attr-defined]
        super().pre_process_command(line, cmd, arg)  # type: ignore[misc]


class FtpServer:
    """``with FtpServer(root, "plain") as server: server.port``."""

    def __init__(self, root: Path, kind: str = "plain", certfile: Path | None = None) -> None:
        self.root, self.kind = root, kind
        self.handler = _handler_class(kind, root, certfile)
        self.ioloop = IOLoop()
        self.server = FTPServer(("127.0.0.1", 0), self.handler, ioloop=self.ioloop)
        self.port: int = self.server.address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"handle_exit": False, "timeout": 0.1},
            daemon=True,
        )

    @property
    def state(self) -> dict[str, Any]:
        return self.handler.state  # type: ignore[attr-defined,no-any-return]

    def start(self) -> FtpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.close_all()
        self._thread.join(timeout=10)

    def __enter__(self) -> FtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _SshServer(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == USER and password == PASSWORD


class _GuardedSftp(asyncssh.SFTPServer):
    """Refuses to open files under ``locked`` (root can read any file, so a test cannot
    rely on file modes): an unreadable file as a real server reports it."""

    def open(self, path: bytes, pflags: int, attrs: Any) -> Any:
        if b"/locked" in path:
            raise asyncssh.SFTPPermissionDenied("permission denied")
        return super().open(path, pflags, attrs)


class SftpServer:
    """asyncssh's SFTP server in its own event loop thread."""

    def __init__(self, root: Path, client_key: asyncssh.SSHKey | None = None) -> None:
        self.root = root
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = client_key
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.port = 0
        self._server: Any = None

    def known_hosts_line(self, key: asyncssh.SSHKey | None = None) -> str:
        public = (key or self.host_key).export_public_key().decode().strip()
        return f"[127.0.0.1]:{self.port} {public}\n"

    async def _listen(self) -> Any:
        authorized = None
        if self.client_key is not None:
            authorized = asyncssh.import_authorized_keys(
                self.client_key.export_public_key().decode()
            )
        return await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            server_factory=_SshServer,
            authorized_client_keys=authorized,
            sftp_factory=lambda chan: _GuardedSftp(chan, chroot=str(self.root).encode()),
        )

    def start(self) -> SftpServer:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._listen(), self.loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> SftpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
