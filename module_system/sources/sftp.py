"""SFTP source (SSH file transfer) with paramiko: the FTP source's keys plus SSH auth.

Host keys are checked strictly by default: the server's key must be in ``known_hosts``
(the given file, else ``~/.ssh/known_hosts``). Each pooled connection is one SSH
transport with one SFTP session, so transfers run in parallel up to ``max_connections``.
The walk, resuming and the pool are :class:`FileServerSource`'s.

Library errors (paramiko, socket) are translated in :func:`sftp_error` only.
"""

from __future__ import annotations

import io
import socket
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import paramiko
from pydantic import Field, SecretStr

from module_system.errors import ItemVanished, ModuleSystemError, TerminalError
from module_system.sources.file_server import (
    FileServerConfig,
    FileServerSource,
    Reader,
    Root,
    connection_error,
)
from module_system.sources.ftp_listing import EntryKind, ListingEntry
from module_system.sources.sftp_read_ahead import ReadAhead

# Read requests of 32 KB in flight per transfer: 2 MB ahead, as many as OpenSSH's sftp
# keeps, enough for ~40 MB/s at a 50 ms round trip.
READ_AHEAD = 64


class SftpSourceConfig(FileServerConfig):
    """The ``source:`` block of a ``type: sftp`` service."""

    port: int = Field(22, ge=1, le=65535, description="the server's SSH port")
    private_key: SecretStr | None = Field(
        None, description="path to a private key file, or the key itself (PEM/OpenSSH text)"
    )
    passphrase: SecretStr | None = Field(None, description="passphrase of an encrypted private key")
    known_hosts: Path | None = Field(None, description="default: ~/.ssh/known_hosts")
    strict_host_key_checking: bool = Field(True, description="false accepts unknown host keys")


@dataclass
class _Connection:
    client: paramiko.SSHClient
    sftp: paramiko.SFTPClient


class SftpSource(FileServerSource[_Connection]):
    """Every file below ``path`` matching the globs; keys relative to ``path``, versions
    size+mtime."""

    type_name = "sftp"
    config_model = SftpSourceConfig
    config: SftpSourceConfig

    # --- connections

    def _connect(self) -> _Connection:
        cfg = self.config
        client = paramiko.SSHClient()
        with self._translated("", "connect"):
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

    def _disconnect(self, conn: _Connection) -> None:
        try:
            conn.sftp.close()
        finally:
            conn.client.close()

    def _is_alive(self, conn: _Connection) -> bool:
        transport = conn.client.get_transport()
        return transport is not None and transport.is_active()

    # --- listing

    def _find_root(self, conn: _Connection, path: str) -> Root:
        return Root(conn.sftp.normalize(path))

    def _list_folder(self, conn: _Connection, folder: str) -> list[ListingEntry]:
        return [_entry(attrs.filename, attrs) for attrs in conn.sftp.listdir_attr(folder)]

    def _settle(self, conn: _Connection, path: str, entry: ListingEntry) -> ListingEntry:
        """Follow a link to a file; never to a folder, so no link loop can trap the walk."""
        if entry.kind is not EntryKind.LINK:
            return entry
        try:
            target = conn.sftp.stat(path)
        except OSError as exc:  # dangling, or a loop of links (ELOOP)
            self.context.logger.warning("%s: link not followed (%s)", self.where(path), exc)
            return ListingEntry(entry.name, EntryKind.OTHER)
        settled = _entry(entry.name, target)
        if settled.kind is not EntryKind.FILE:
            return ListingEntry(entry.name, EntryKind.OTHER)  # a folder: never walked
        return settled

    # --- fetching

    @contextmanager
    def _reading(
        self, conn: _Connection, path: str, offset: int, size: int | None
    ) -> Iterator[Reader]:
        with conn.sftp.open(path, "rb") as remote:
            # Pipelined (no round trip per 32 KB), but never more than READ_AHEAD ahead.
            yield ReadAhead(remote, offset, size, READ_AHEAD).read

    def _translate(self, exc: Exception, where: str, phase: str) -> ModuleSystemError:
        return sftp_error(exc, where, phase)


def _entry(name: str, attrs: paramiko.SFTPAttributes) -> ListingEntry:
    mode = attrs.st_mode or 0
    if stat.S_ISDIR(mode):
        kind = EntryKind.DIR
    elif stat.S_ISREG(mode):
        kind = EntryKind.FILE
    elif stat.S_ISLNK(mode):
        kind = EntryKind.LINK
    else:
        kind = EntryKind.OTHER
    modified = datetime.fromtimestamp(attrs.st_mtime, UTC) if attrs.st_mtime else None
    return ListingEntry(name, kind, attrs.st_size, modified, exact_time=True)


def sftp_error(exc: Exception, where: str, phase: str) -> ModuleSystemError:
    """Translate a paramiko/socket error into a transient or terminal one with a reason."""
    if isinstance(exc, paramiko.BadHostKeyException):
        return TerminalError(
            f"{where}: host key mismatch: the server's {exc.key.get_name()} key "
            f"{exc.key.fingerprint} is not the one in known_hosts ({exc.expected_key.fingerprint})",
            reason="sftp_host_key_mismatch",
        )
    if isinstance(exc, paramiko.PasswordRequiredException):
        message = f"{where}: the private key is encrypted: set passphrase"
        return TerminalError(message, reason="sftp_key_encrypted")
    if isinstance(exc, paramiko.AuthenticationException):
        return TerminalError(f"{where}: login refused ({exc})", reason="sftp_login_refused")
    if isinstance(exc, paramiko.SSHException) and "known_hosts" in str(exc):
        return TerminalError(
            f"{where}: host key unknown: the server is not in known_hosts "
            "(add it, or set strict_host_key_checking: false)",
            reason="sftp_host_key_unknown",
        )
    if isinstance(exc, FileNotFoundError):
        if phase == "download":
            return ItemVanished(f"{where}: gone since listing", reason="sftp_no_such_file")
        message = f"{where}: path missing ({exc.strerror or exc})"
        return TerminalError(message, reason="sftp_no_such_file")
    if isinstance(exc, PermissionError):
        message = f"{where}: {phase}: permission denied"
        return TerminalError(message, reason="sftp_permission_denied")
    if isinstance(exc, socket.gaierror):
        return TerminalError(f"{where}: cannot resolve host ({exc})", reason="dns")
    if isinstance(exc, paramiko.SSHException | EOFError | OSError):
        return connection_error(exc, where, phase)
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
