"""FTP and FTPS source: files below a remote folder, listed with MLSD or LIST.

The walk, resuming and the connection pool are :class:`FileServerSource`'s; this module
speaks FTP: log in (with TLS where asked), list a folder with MLSD or LIST, resolve links
with SIZE and exact times with MDTM, read a file with ``REST`` + ``RETR``. One control
connection carries one transfer at a time, so each fetch borrows a pooled connection.

Library errors (ftplib, socket, ssl) are translated in :func:`ftp_error` only.
"""

from __future__ import annotations

import contextlib
import ftplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field

from module_system.errors import ItemVanished, ModuleSystemError, TerminalError, TransientError
from module_system.sources.base import SourceContext
from module_system.sources.file_server import (
    FileServerConfig,
    FileServerSource,
    Reader,
    Root,
    connection_error,
)
from module_system.sources.ftp_listing import (
    EntryKind,
    ListingEntry,
    parse_ftp_timestamp,
    parse_list_line,
    parse_mlsd_facts,
    parse_mlst_reply,
)

_VANISHED_HINTS = ("no such file", "not found", "does not exist", "cannot find")


class FtpSourceConfig(FileServerConfig):
    """The ``source:`` block of a ``type: ftp`` service."""

    port: int = Field(21, ge=1, le=65535, description="the server's port")
    tls: Literal["none", "explicit", "implicit"] = Field(
        "none",
        description="none: plain FTP; explicit: AUTH TLS on the normal port; implicit: TLS "
        "from the first byte (usually port 990); both protect the data connections too",
    )
    verify: bool = Field(True, description="verify the server certificate and host name")
    ca_file: Path | None = Field(None, description="PEM bundle of CAs to trust instead")
    passive: bool = Field(True, description="passive mode; false: active mode (PORT)")
    encoding: str = Field("utf-8", description="encoding of file names on the server")


class _ImplicitOrReusingTLS(ftplib.FTP_TLS):
    """FTP_TLS that can speak implicit TLS (port 990 style) and reuses the control
    connection's TLS session on data connections, which vsftpd and others require."""

    implicit = False

    def connect(
        self,
        host: str = "",
        port: int = 0,
        timeout: float = -999,
        source_address: tuple[str, int] | None = None,
    ) -> str:
        if not self.implicit:
            return super().connect(host, port, timeout, source_address)
        self.host, self.port, self.timeout = host, port, timeout
        raw = socket.create_connection((host, port), timeout, source_address=source_address)
        self.af = raw.family
        self.sock = self.context.wrap_socket(raw, server_hostname=host)
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def ntransfercmd(
        self, cmd: str, rest: int | str | None = None
    ) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:  # type: ignore[attr-defined]
            session = getattr(self.sock, "session", None)
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=session)
        return conn, size


@dataclass
class _Session:
    """One logged-in control connection, what its server offers, and its current folder
    (so a folder found as the root is not entered twice)."""

    ftp: ftplib.FTP
    features: set[str] = field(default_factory=set)
    cwd: str | None = None
    binary: bool = True  # TYPE I is set at login; a listing (MLSD, LIST) switches to ASCII

    @property
    def mlsd(self) -> bool:
        return "MLST" in self.features

    def supports(self, feature: str) -> bool:
        return feature in self.features

    def binary_mode(self) -> None:
        """``TYPE I`` unless already set: one round trip less per file downloaded."""
        if not self.binary:
            self.ftp.voidcmd("TYPE I")
            self.binary = True

    def enter(self, folder: str) -> None:
        if self.cwd != folder:
            self.ftp.cwd(folder)
            self.cwd = folder


class FtpSource(FileServerSource[_Session]):
    """Every file below ``path`` (recursively by default) matching ``include`` and not
    ``exclude``. Item keys are paths relative to ``path``; versions are size+mtime."""

    type_name = "ftp"
    config_model = FtpSourceConfig
    config: FtpSourceConfig

    def __init__(self, config: FtpSourceConfig, context: SourceContext) -> None:
        super().__init__(config, context)
        if _password_in_clear(config):
            context.logger.warning(
                "%s: plain FTP sends the password in clear text; use tls: explicit (or "
                "implicit) if the server offers it",
                self.where(),
            )

    def _scheme(self) -> str:
        return "ftps" if self.config.tls != "none" else "ftp"

    # --- connections

    def _connect(self) -> _Session:
        ftp = self._client()
        try:
            return self._log_in(ftp)
        except BaseException:
            _quit_session(ftp)  # the half-open connection
            raise

    def _log_in(self, ftp: ftplib.FTP) -> _Session:
        cfg = self.config
        with self._translated("", "connect"):
            ftp.connect(cfg.host, cfg.port, timeout=cfg.connect_timeout)
        if isinstance(ftp, ftplib.FTP_TLS) and cfg.tls == "explicit":
            with self._translated("", "TLS handshake"):
                ftp.auth()
        with self._translated("", "login"):
            ftp.login(cfg.username, cfg.password.get_secret_value())
        with self._translated("", "session setup"):
            if isinstance(ftp, ftplib.FTP_TLS):
                ftp.prot_p()
            ftp.set_pasv(cfg.passive)
            ftp.voidcmd("TYPE I")
            features = _features(ftp)
            if ftp.sock is not None:  # from here on a stalled transfer is a data timeout
                ftp.sock.settimeout(cfg.data_timeout)
            ftp.timeout = cfg.data_timeout
        return _Session(ftp, features)

    def _client(self) -> ftplib.FTP:
        cfg = self.config
        if cfg.tls == "none":
            return ftplib.FTP(encoding=cfg.encoding)
        client = _ImplicitOrReusingTLS(context=_tls_context(cfg), encoding=cfg.encoding)
        client.implicit = cfg.tls == "implicit"
        return client

    def _disconnect(self, conn: _Session) -> None:
        _quit_session(conn.ftp)

    def _is_alive(self, conn: _Session) -> bool:
        try:
            conn.ftp.voidcmd("NOOP")
        except (ftplib.Error, OSError, EOFError):
            return False
        return True

    # --- listing

    def _find_root(self, conn: _Session, path: str) -> Root:
        conn.enter(path)
        conn.cwd = absolute = conn.ftp.pwd()
        return Root(absolute, _unique(conn, absolute))

    def _list_folder(self, conn: _Session, folder: str) -> list[ListingEntry]:
        conn.enter(folder)
        return _mlsd(conn) if conn.mlsd else _list(conn, self.context)

    def _settle(self, conn: _Session, path: str, entry: ListingEntry) -> ListingEntry:
        """Resolve symlinks and replace LIST's coarse dates with MDTM where offered."""
        if entry.kind is EntryKind.LINK:
            return _resolve_link(conn, path, entry)
        if entry.kind is EntryKind.FILE and not entry.exact_time:
            return _with_mdtm(conn, path, entry)
        return entry

    # --- fetching

    def _can_resume(self, conn: _Session) -> bool:
        return conn.supports("REST STREAM")

    @contextmanager
    def _reading(
        self, conn: _Session, path: str, offset: int, size: int | None
    ) -> Iterator[Reader]:
        """``RETR`` (after ``REST offset``) as ``ftplib.FTP.retrbinary`` sends it, read
        through the data connection instead of a callback."""
        ftp = conn.ftp
        conn.binary_mode()
        try:
            data = ftp.transfercmd(f"RETR {path}", offset or None)
        except ftplib.error_perm as exc:
            if _reply(exc).startswith("550") and not _exists(conn, path, exc):
                gone = f"{self.where(path)}: gone since listing"
                raise ItemVanished(gone, reason="ftp_550") from exc
            raise
        with data:
            yield data.recv
            if isinstance(data, ssl.SSLSocket):
                data.unwrap()
        ftp.voidresp()

    def _translate(self, exc: Exception, where: str, phase: str) -> ModuleSystemError:
        return ftp_error(exc, where, phase)


def _password_in_clear(config: FtpSourceConfig) -> bool:
    anonymous = config.username.lower() in ("anonymous", "ftp")
    return config.tls == "none" and not anonymous and bool(config.password.get_secret_value())


def ftp_error(exc: Exception, where: str, phase: str) -> ModuleSystemError:
    """Translate an ftplib/socket/ssl error into a transient or terminal one with a reason:
    ``ftp_{reply code}``, ``tls_untrusted``, ``tls_failed``, ``dns``, ``timeout`` or
    ``connection_lost``."""
    if isinstance(exc, ftplib.error_perm):
        reply = _reply(exc)
        reason = _reply_reason(reply)
        if reply.startswith("530") or phase == "login":
            return TerminalError(f"{where}: login refused ({reply})", reason=reason)
        if phase == "list" and reply.startswith("550"):
            message = f"{where}: path missing or not accessible ({reply})"
            return TerminalError(message, reason=reason)
        if phase == "TLS handshake":
            message = f"{where}: TLS handshake failed: server refused ({reply})"
            return TerminalError(message, reason=reason)
        return TerminalError(f"{where}: {phase} refused ({reply})", reason=reason)
    if isinstance(exc, ftplib.error_temp):
        reply = _reply(exc)
        message = f"{where}: {phase} failed, temporary ({reply})"
        return TransientError(message, reason=_reply_reason(reply))
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        message = f"{where}: TLS handshake failed: certificate not trusted ({detail})"
        return TerminalError(message, reason="tls_untrusted")
    if isinstance(exc, ssl.SSLError) and phase in ("connect", "TLS handshake"):
        message = f"{where}: TLS handshake failed ({exc.reason or exc})"
        return TerminalError(message, reason="tls_failed")
    if isinstance(exc, socket.gaierror):
        return TerminalError(f"{where}: cannot resolve host ({exc})", reason="dns")
    if isinstance(exc, ftplib.Error):  # error_reply, error_proto: an unexpected answer
        reply = _reply(exc)
        message = f"{where}: {phase}: unexpected server reply ({reply})"
        return TransientError(message, reason=_reply_reason(reply, "ftp_unexpected_reply"))
    if isinstance(exc, EOFError | OSError):
        return connection_error(exc, where, phase)
    return TerminalError(f"{where}: {phase} failed: {exc!r}")


def _reply_reason(reply: str, otherwise: str = "ftp_refused") -> str:
    code = reply[:3]
    return f"ftp_{code}" if code.isdigit() else otherwise


def _reply(exc: BaseException) -> str:
    return str(exc.args[0] if exc.args else exc).strip()


def _tls_context(config: FtpSourceConfig) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=config.ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TerminalError(f"ca_file {config.ca_file}: cannot load ({exc})") from exc
    if not config.verify:  # only when the registry says `verify: false` explicitly
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _features(ftp: ftplib.FTP) -> set[str]:
    """The FEAT reply as upper-cased feature names, e.g. {"MLST", "SIZE", "REST STREAM"}."""
    try:
        reply = ftp.sendcmd("FEAT")
    except ftplib.error_perm:
        return set()
    features = set()
    for line in reply.splitlines()[1:-1]:
        words = line.strip().upper().split()
        if words:
            features.add(words[0])
            if words[0] == "REST" and "STREAM" in words[1:]:
                features.add("REST STREAM")
    return features


def _mlsd(session: _Session) -> list[ListingEntry]:
    session.binary = False  # ftplib sends TYPE A first
    return [parse_mlsd_facts(name, facts) for name, facts in session.ftp.mlsd()]


def _list(session: _Session, context: SourceContext) -> list[ListingEntry]:
    entries: list[ListingEntry] = []

    def take(line: str) -> None:
        entry = parse_list_line(line)
        if entry is None:
            if line.strip() and not line.lower().startswith("total"):
                context.logger.warning("LIST line not understood, skipped: %r", line)
        elif entry.kind is not EntryKind.OTHER:
            entries.append(entry)

    session.binary = False  # ftplib sends TYPE A first
    session.ftp.retrlines("LIST", take)
    session.binary_mode()  # where SIZE is refused in ASCII
    return entries


def _resolve_link(session: _Session, path: str, entry: ListingEntry) -> ListingEntry:
    """A link to a file becomes a file with the target's size; links to folders are not
    followed (they could loop)."""
    session.binary_mode()  # after MLSD the session is in ASCII, where SIZE may be refused
    try:
        size = session.ftp.size(path)
    except ftplib.error_perm:
        return ListingEntry(entry.name, EntryKind.OTHER)
    return _with_mdtm(session, path, ListingEntry(entry.name, EntryKind.FILE, size, None))


def _with_mdtm(session: _Session, path: str, entry: ListingEntry) -> ListingEntry:
    if not session.supports("MDTM"):
        return entry
    try:
        reply = session.ftp.sendcmd(f"MDTM {path}")
    except ftplib.error_perm:
        return entry
    modified = parse_ftp_timestamp(reply[4:])
    if modified is None:
        return entry
    return ListingEntry(entry.name, entry.kind, entry.size, modified, exact_time=True)


def _unique(session: _Session, path: str) -> str | None:
    """MLST's ``unique`` fact of ``path``, where the server gives one."""
    if not session.mlsd:
        return None
    try:
        reply = session.ftp.sendcmd(f"MLST {path}")
    except ftplib.error_perm:
        return None
    return parse_mlst_reply(reply).get("unique") or None


def _exists(session: _Session, path: str, refusal: ftplib.error_perm) -> bool:
    """After a 550 on RETR: is the file still there (so it is unreadable) or gone?"""
    if session.supports("SIZE") or session.mlsd:
        try:
            if session.mlsd:
                session.ftp.sendcmd(f"MLST {path}")
            else:
                session.ftp.size(path)
        except ftplib.error_perm:
            return False
        return True
    return not any(hint in _reply(refusal).lower() for hint in _VANISHED_HINTS)


def _quit_session(ftp: ftplib.FTP) -> None:
    with contextlib.suppress(OSError):
        ftp.close()  # no QUIT round trip: the connection may be half-broken
