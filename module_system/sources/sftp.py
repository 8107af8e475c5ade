"""SFTP source (SSH file transfer) with paramiko: the FTP source's keys plus SSH auth.

Host keys are checked strictly by default: the server's key must be in ``known_hosts``
(the given file, else ``~/.ssh/known_hosts``). Each pooled connection is one SSH
transport with one SFTP session, so transfers run in parallel up to ``max_connections``.

Library errors (paramiko, socket) are translated in :func:`sftp_errors` only.
"""

from __future__ import annotations

import functools
import io
import posixpath
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import paramiko
from pydantic import Field, SecretStr

from module_system.errors import (
    ItemVanished,
    JobCancelled,
    ModuleSystemError,
    TerminalError,
    TransientError,
)
from module_system.sources.base import RemoteItem, Source, SourceContext
from module_system.sources.connection_pool import ConnectionPool
from module_system.sources.file_server import FileServerConfig, file_version, relative_key

CHUNK = 256 * 1024


class SftpSourceConfig(FileServerConfig):
    """The ``source:`` block of a ``type: sftp`` service."""

    port: int = Field(22, ge=1, le=65535)
    private_key: SecretStr | None = Field(
        None, description="path to a private key file, or the key itself (PEM/OpenSSH text)"
    )
    passphrase: SecretStr | None = None
    known_hosts: Path | None = Field(None, description="default: ~/.ssh/known_hosts")
    strict_host_key_checking: bool = Field(True, description="false accepts unknown host keys")


@dataclass
class _Connection:
    client: paramiko.SSHClient
    sftp: paramiko.SFTPClient


class SftpSource(Source):
    """Every file below ``path`` matching the globs; keys relative to ``path``, versions
    size+mtime."""

    type_name = "sftp"
    config_model = SftpSourceConfig

    def __init__(self, config: SftpSourceConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context
        self._retrier = context.make_retrier()
        self._pool: ConnectionPool[_Connection] = ConnectionPool(
            self._open, _close, config.max_connections, _is_alive
        )
        self._root: str | None = None

    @classmethod
    def from_config(cls, config: SftpSourceConfig, context: SourceContext) -> Self:
        return cls(config, context)

    def where(self, path: str = "") -> str:
        cfg = self.config
        return f"sftp://{cfg.username}@{cfg.host}:{cfg.port}{path}"

    def _open(self) -> _Connection:
        cfg = self.config
        client = paramiko.SSHClient()
        with sftp_errors(self.where(), "connect"):
            self._load_host_keys(client)
            client.connect(
                cfg.host,
                cfg.port,
                username=cfg.username,
                password=cfg.password.get_secret_value() or None,
                pkey=_private_key(cfg),
                timeout=cfg.connect_timeout,
                banner_timeout=cfg.connect_timeout,
                auth_timeout=cfg.connect_timeout,
                allow_agent=False,
                look_for_keys=False,
            )
            sftp = client.open_sftp()
            channel = sftp.get_channel()
            if channel is not None:
                channel.settimeout(cfg.data_timeout)
        return _Connection(client, sftp)

    def _load_host_keys(self, client: paramiko.SSHClient) -> None:
        cfg = self.config
        if cfg.known_hosts is not None:
            try:
                client.load_host_keys(str(cfg.known_hosts))
            except OSError as exc:
                raise TerminalError(f"known_hosts file {cfg.known_hosts}: {exc}") from exc
        else:
            client.load_system_host_keys()
        if cfg.strict_host_key_checking:
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        else:
            client.set_missing_host_key_policy(paramiko.WarningPolicy())

    # --- listing

    def list_items(self) -> Iterator[RemoteItem]:
        folders = [self.config.path]
        while folders:
            folder = folders.pop()
            entries, absolute = self._retrier.call(
                functools.partial(self._list_folder, folder), f"list {self.where(folder)}"
            )
            for name, attrs in entries:
                if self.context.cancel.is_set():
                    return
                path = posixpath.join(absolute, name)
                if stat.S_ISDIR(attrs.st_mode or 0):
                    if self.config.recursive:
                        folders.append(path)
                elif stat.S_ISREG(attrs.st_mode or 0):
                    item = self._item(path, attrs)
                    if item is not None:
                        yield item

    def _list_folder(self, folder: str) -> tuple[list[tuple[str, paramiko.SFTPAttributes]], str]:
        first = self._root is None
        phase = "list" if first else "list folder"
        with sftp_errors(self.where(folder), phase), self._pool.connection() as conn:
            absolute = conn.sftp.normalize(folder) if first else folder
            if first:
                self._root = absolute
            entries = []
            for attrs in conn.sftp.listdir_attr(absolute):
                name = attrs.filename
                if stat.S_ISLNK(attrs.st_mode or 0):  # follow to files; never to folders
                    target = _follow(conn.sftp, posixpath.join(absolute, name))
                    if target is None or stat.S_ISDIR(target.st_mode or 0):
                        continue
                    attrs = target
                entries.append((name, attrs))
            return entries, absolute

    def _item(self, path: str, attrs: paramiko.SFTPAttributes) -> RemoteItem | None:
        assert self._root is not None
        key = relative_key(self._root, path)
        if not self.config.wanted(key):
            return None
        modified = datetime.fromtimestamp(attrs.st_mtime, UTC) if attrs.st_mtime else None
        return RemoteItem(
            key=key,
            uri=self.where(path),
            size=attrs.st_size,
            version=file_version(attrs.st_size, modified),
            modified=modified,
            extra={"path": path},
        )

    # --- fetching

    def writes_in_place(self, item: RemoteItem) -> bool:
        return True  # streamed front to back into dest (resuming appends)

    def fetch(self, item: RemoteItem, dest: Path) -> None:
        path: str = item.extra["path"]
        with sftp_errors(self.where(path), "download"), self._pool.connection() as conn:
            offset = dest.stat().st_size if dest.exists() else 0
            resume = 0 < offset < (item.size or 0)
            with conn.sftp.open(path, "rb") as remote, dest.open("ab" if resume else "wb") as out:
                if resume:
                    remote.seek(offset)
                remote.prefetch(item.size)  # pipelined reads: no round trip per chunk
                self._copy(remote, out, path)

    def _copy(self, remote: Any, out: Any, path: str) -> None:
        while chunk := remote.read(CHUNK):
            if self.context.cancel.is_set():
                raise JobCancelled(f"{self.where(path)}: cancelled during download")
            out.write(chunk)

    def close(self) -> None:
        self._pool.close()


@contextmanager
def sftp_errors(where: str, phase: str) -> Iterator[None]:
    """Translate paramiko/socket errors into transient or terminal ones."""
    try:
        yield
    except ModuleSystemError:
        raise
    except Exception as exc:
        raise _translate(exc, where, phase) from exc


def _translate(exc: Exception, where: str, phase: str) -> ModuleSystemError:
    if isinstance(exc, paramiko.BadHostKeyException):
        return TerminalError(
            f"{where}: host key mismatch: the server's {exc.key.get_name()} key "
            f"{exc.key.fingerprint} is not the one in known_hosts ({exc.expected_key.fingerprint})"
        )
    if isinstance(exc, paramiko.PasswordRequiredException):
        return TerminalError(f"{where}: the private key is encrypted: set passphrase")
    if isinstance(exc, paramiko.AuthenticationException):
        return TerminalError(f"{where}: login refused ({exc})")
    if isinstance(exc, paramiko.SSHException) and "known_hosts" in str(exc):
        return TerminalError(
            f"{where}: host key unknown: the server is not in known_hosts "
            "(add it, or set strict_host_key_checking: false)"
        )
    if isinstance(exc, FileNotFoundError):
        if phase == "download":
            return ItemVanished(f"{where}: gone since listing")
        return TerminalError(f"{where}: path missing ({exc.strerror or exc})")
    if isinstance(exc, PermissionError):
        return TerminalError(f"{where}: {phase}: permission denied")
    if isinstance(exc, socket.gaierror):
        return TerminalError(f"{where}: cannot resolve host ({exc})")
    if isinstance(exc, paramiko.SSHException | EOFError | OSError):
        detail = str(exc) or type(exc).__name__
        return TransientError(f"{where}: {phase}: connection lost or timed out ({detail})")
    return TerminalError(f"{where}: {phase} failed: {exc!r}")


def _private_key(config: SftpSourceConfig) -> paramiko.PKey | None:
    if config.private_key is None:
        return None
    value = config.private_key.get_secret_value()
    passphrase = config.passphrase.get_secret_value() if config.passphrase else None
    if "PRIVATE KEY-----" not in value:
        try:
            return paramiko.PKey.from_path(Path(value).expanduser(), passphrase)
        except FileNotFoundError as exc:
            raise TerminalError(f"private_key file not found: {value}") from exc
        except ValueError as exc:  # cryptography's "wrong password or not a key"
            raise TerminalError(f"private_key {value}: cannot load ({exc})") from exc
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(value), passphrase)
        except paramiko.PasswordRequiredException:
            raise
        except paramiko.SSHException:
            continue
    raise TerminalError("private_key: not a supported private key (Ed25519, ECDSA or RSA)")


def _follow(sftp: paramiko.SFTPClient, path: str) -> paramiko.SFTPAttributes | None:
    try:
        return sftp.stat(path)
    except OSError:  # a dangling link
        return None


def _is_alive(conn: _Connection) -> bool:
    transport = conn.client.get_transport()
    return transport is not None and transport.is_active()


def _close(conn: _Connection) -> None:
    try:
        conn.sftp.close()
    finally:
        conn.client.close()
