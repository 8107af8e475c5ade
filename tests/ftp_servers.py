"""Real FTP, FTPS and SFTP servers on loopback for tests (port 0), each in a thread.

- :class:`FtpServer` runs pyftpdlib with one of several handler flavours: plain (MLSD),
  without MLSD (Unix LIST), DOS-format LIST, FTPS explicit (AUTH TLS) and implicit, and
  one that drops the connection mid-transfer.
- :class:`SftpServer` runs asyncssh's SFTP server with a generated host key, password
  and public-key logins, rooted at a folder. Like the FTP server it records what clients
  do, can drop the connection mid-transfer and can delete a file once it is asked for.
- :class:`FileServer` is either, as the scenarios both protocols share see it.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from module_system.config.models import RetryConfig
from module_system.sources.base import SourceContext
from module_system.sources.file_server import FileServerSource
from module_system.sources.ftp import FtpSource
from module_system.sources.sftp import SftpSource

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
    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.state["commands"].append("CONNECT")

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        self.state["commands"].append("PASS")
        return username == USER and password == PASSWORD


class _GuardedSftp(asyncssh.SFTPServer):
    """Refuses to open files under ``locked`` (root can read any file, so a test cannot
    rely on file modes): an unreadable file as a real server reports it. Records
    ``REALPATH path``, ``OPEN path`` and ``START offset`` (a transfer's first read); drops
    the connection as :class:`DroppingDTPHandler` does, deletes ``vanish`` when it is
    opened, and answers reads with at most ``max_read`` bytes (short reads are allowed)."""

    def __init__(self, chan: Any, chroot: bytes, state: dict[str, Any]) -> None:
        super().__init__(chan, chroot=chroot)
        self.state = state
        self._fresh: set[int] = set()  # open files not read yet

    def realpath(self, path: bytes) -> Any:
        self.state["commands"].append(f"REALPATH {path.decode()}")
        return super().realpath(path)

    def open(self, path: bytes, pflags: int, attrs: Any) -> Any:
        name = path.decode()
        self.state["commands"].append(f"OPEN {name}")
        if b"/locked" in path:
            raise asyncssh.SFTPPermissionDenied("permission denied")
        vanish = self.state.get("vanish")
        if vanish and name.endswith(vanish):  # deleted after the listing
            Path(self.map_path(path).decode()).unlink(missing_ok=True)
        file = super().open(path, pflags, attrs)
        self._fresh.add(id(file))
        return file

    def read(self, file_obj: object, offset: int, size: int) -> Any:
        if id(file_obj) in self._fresh:
            self._fresh.discard(id(file_obj))
            self.state["commands"].append(f"START {offset}")
        on_read = self.state.get("on_read")
        if on_read is not None:
            on_read(offset, size)
        if self.state["drops"] > 0 and offset + size >= self.state["drop_after"]:
            self.state["drops"] -= 1
            self.connection.abort()
            raise asyncssh.SFTPFailure("dropped")
        return super().read(file_obj, offset, min(size, self.state.get("max_read", size)))


class SftpServer:
    """asyncssh's SFTP server in its own event loop thread."""

    def __init__(self, root: Path, client_key: asyncssh.SSHKey | None = None) -> None:
        self.root = root
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key = client_key
        self.state: dict[str, Any] = {"commands": [], "drops": 0, "drop_after": 0}
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
        chroot = str(self.root).encode()
        return await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[self.host_key],
            server_factory=lambda: _SshServer(self.state),
            authorized_client_keys=authorized,
            sftp_factory=lambda chan: _GuardedSftp(chan, chroot, self.state),
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


@dataclass
class FileServer:
    """A running FTP or SFTP test server, as the scenarios both protocols share see it."""

    protocol: str  # "ftp" or "sftp": the service type
    port: int
    state: dict[str, Any]  # what the server recorded, and its fault switches
    known_hosts: Path | None = None  # SFTP: a known_hosts file that trusts the server

    def service(self, **source: Any) -> dict[str, Any]:
        if self.known_hosts is not None:
            source.setdefault("known_hosts", str(self.known_hosts))
        return ftp_service(self.port, self.protocol, **source)

    def source(
        self,
        cancel: threading.Event | None = None,
        deadline: float | None = None,
        **source: Any,
    ) -> FileServerSource[Any]:
        """The source of :meth:`service`, outside a job (one attempt, no retries)."""
        cls = {"ftp": FtpSource, "sftp": SftpSource}[self.protocol]
        config = cls.config_model.model_validate(self.service(**source)["source"])
        context = SourceContext(
            service_id="svc", job_id="job", run_id="run", retry=RetryConfig(attempts=1),
            cursors=None,  # type: ignore[arg-type]  # FTP and SFTP keep no cursor
            logger=logging.getLogger(f"module_system.sources.{self.protocol}"),
            cancel=cancel or threading.Event(), deadline=deadline,
        )  # fmt: skip
        return cls.from_config(config, context)

    @property
    def commands(self) -> list[str]:
        return self.state["commands"]  # type: ignore[no-any-return]

    def connections(self) -> int:
        """Logins begun: ``USER`` commands, SSH connections."""
        opening = "USER alice" if self.protocol == "ftp" else "CONNECT"
        return self.commands.count(opening)

    def root_lookups(self) -> int:
        """How often the configured path was looked up: ``CWD``, SFTP ``REALPATH``."""
        lookup = "CWD" if self.protocol == "ftp" else "REALPATH"
        return sum(1 for command in self.commands if command.split(" ")[0] == lookup)

    def transfer_starts(self) -> list[int]:
        """The byte offsets transfers started at (FTP ``REST``, SFTP first reads)."""
        start = "REST " if self.protocol == "ftp" else "START "
        return [int(c.split(" ")[1]) for c in self.commands if c.startswith(start)]
