"""FTP and FTPS source: files below a remote folder, listed with MLSD or LIST.

Each transfer needs its own control connection, so fetches borrow connections from a
small :class:`~module_system.sources.connection_pool.ConnectionPool` capped at
``max_connections``. Listing borrows one connection per folder and lists it whole, so a
job with ``max_connections: 1`` cannot deadlock between its listing and its fetches.

Library errors (ftplib, socket, ssl) are translated in :func:`ftp_errors` only.
"""

from __future__ import annotations

import contextlib
import ftplib
import functools
import posixpath
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field

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
from module_system.sources.ftp_listing import (
    EntryKind,
    ListingEntry,
    parse_ftp_timestamp,
    parse_list_line,
    parse_mlsd_facts,
)

CHUNK = 256 * 1024
_VANISHED_HINTS = ("no such file", "not found", "does not exist", "cannot find")


class FtpSourceConfig(FileServerConfig):
    """The ``source:`` block of a ``type: ftp`` service."""

    port: int = Field(21, ge=1, le=65535)
    tls: Literal["none", "explicit", "implicit"] = "none"
    verify: bool = Field(True, description="verify the server certificate and host name")
    ca_file: Path | None = Field(None, description="PEM bundle of CAs to trust instead")
    passive: bool = True
    encoding: str = "utf-8"


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
    """One logged-in control connection and what its server offers."""

    ftp: ftplib.FTP
    features: set[str] = field(default_factory=set)

    @property
    def mlsd(self) -> bool:
        return "MLST" in self.features

    def supports(self, feature: str) -> bool:
        return feature in self.features


class FtpSource(Source):
    """Every file below ``path`` (recursively by default) matching ``include`` and not
    ``exclude``. Item keys are paths relative to ``path``; versions are size+mtime."""

    type_name = "ftp"
    config_model = FtpSourceConfig
    scheme = "ftp"

    def __init__(self, config: FtpSourceConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context
        self._retrier = context.make_retrier()
        self._pool: ConnectionPool[_Session] = ConnectionPool(
            self._open, _quit, config.max_connections, _is_alive
        )
        self._root: str | None = None

    @classmethod
    def from_config(cls, config: FtpSourceConfig, context: SourceContext) -> Self:
        return cls(config, context)

    def where(self, path: str = "") -> str:
        """The server and path for messages: never the password."""
        cfg = self.config
        scheme = "ftps" if cfg.tls != "none" else self.scheme
        return f"{scheme}://{cfg.username}@{cfg.host}:{cfg.port}{path}"

    # --- connections

    def _open(self) -> _Session:
        cfg = self.config
        ftp = self._client()
        with ftp_errors(self.where(), "connect"):
            ftp.connect(cfg.host, cfg.port, timeout=cfg.connect_timeout)
        if isinstance(ftp, ftplib.FTP_TLS) and cfg.tls == "explicit":
            with ftp_errors(self.where(), "TLS handshake", ftp):
                ftp.auth()
        with ftp_errors(self.where(), "login", ftp):
            ftp.login(cfg.username, cfg.password.get_secret_value())
        with ftp_errors(self.where(), "session setup", ftp):
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

    # --- listing

    def list_items(self) -> Iterator[RemoteItem]:
        folders = [self.config.path]
        while folders:
            folder = folders.pop()
            entries, root_folder = self._retrier.call(
                functools.partial(self._list_folder, folder), f"list {self.where(folder)}"
            )
            for entry in entries:
                if self.context.cancel.is_set():
                    return
                path = posixpath.join(root_folder, entry.name)
                if entry.kind is EntryKind.DIR:
                    if self.config.recursive:
                        folders.append(path)
                elif entry.kind is EntryKind.FILE:
                    yield self._item(path, entry)

    def _list_folder(self, folder: str) -> tuple[list[ListingEntry], str]:
        """List one folder whole on one borrowed connection. Returns its absolute path."""
        first = self._root is None
        phase = "list" if first else "list folder"
        with ftp_errors(self.where(folder), phase), self._pool.connection() as session:
            session.ftp.cwd(folder)
            absolute = session.ftp.pwd() if first else folder
            if first:
                self._root = absolute
            raw = _mlsd(session) if session.mlsd else _list(session, self.context)
            return self._complete(session, absolute, raw), absolute

    def _complete(
        self, session: _Session, folder: str, entries: list[ListingEntry]
    ) -> list[ListingEntry]:
        """Resolve symlinks and replace LIST's coarse dates with MDTM where offered."""
        done = []
        for entry in entries:
            path = posixpath.join(folder, entry.name)
            if entry.kind is not EntryKind.DIR and not self._wanted(path):
                continue  # no SIZE/MDTM round trips for files the job would skip anyway
            if entry.kind is EntryKind.LINK:
                entry = _resolve_link(session, path, entry)
            elif entry.kind is EntryKind.FILE and not entry.exact_time:
                entry = _with_mdtm(session, path, entry)
            done.append(entry)
        return done

    def _wanted(self, path: str) -> bool:
        assert self._root is not None
        return self.config.wanted(relative_key(self._root, path))

    def _item(self, path: str, entry: ListingEntry) -> RemoteItem:
        assert self._root is not None
        key = relative_key(self._root, path)
        return RemoteItem(
            key=key,
            uri=self.where(path),
            size=entry.size,
            version=file_version(entry.size, entry.modified),
            modified=entry.modified,
            extra={"path": path},
        )

    # --- fetching

    def writes_in_place(self, item: RemoteItem) -> bool:
        return True  # streamed front to back into dest (resuming appends)

    def fetch(self, item: RemoteItem, dest: Path) -> None:
        path: str = item.extra["path"]
        with ftp_errors(self.where(path), "download"), self._pool.connection() as session:
            offset = dest.stat().st_size if dest.exists() else 0
            resume = 0 < offset < (item.size or 0) and session.supports("REST STREAM")
            try:
                with dest.open("ab" if resume else "wb") as out:
                    session.ftp.retrbinary(
                        f"RETR {path}", self._writer(out, path), CHUNK, offset if resume else None
                    )
            except ftplib.error_perm as exc:
                if _reply(exc).startswith("550") and not _exists(session, path, exc):
                    raise ItemVanished(f"{self.where(path)}: gone since listing") from exc
                raise
        if resume:
            self.context.logger.info("%s: resumed at byte %d", self.where(path), offset)

    def _writer(self, out: Any, path: str) -> Callable[[bytes], None]:
        cancel = self.context.cancel

        def write(chunk: bytes) -> None:
            if cancel.is_set():
                raise JobCancelled(f"{self.where(path)}: cancelled during download")
            out.write(chunk)

        return write

    def close(self) -> None:
        self._pool.close()


@contextmanager
def ftp_errors(where: str, phase: str, ftp: ftplib.FTP | None = None) -> Iterator[None]:
    """Translate ftplib/socket/ssl errors into transient or terminal ones.

    ``phase`` names the step for the message (connect, login, list, download); when
    ``ftp`` is given, the half-open connection is closed on error.
    """
    try:
        yield
    except BaseException as exc:
        if ftp is not None:
            _quit_session(ftp)
        if isinstance(exc, ModuleSystemError) or not isinstance(exc, Exception):
            raise
        raise _translate(exc, where, phase) from exc


def _translate(exc: Exception, where: str, phase: str) -> ModuleSystemError:
    if isinstance(exc, ftplib.error_perm):
        reply = _reply(exc)
        if reply.startswith("530") or phase == "login":
            return TerminalError(f"{where}: login refused ({reply})")
        if phase == "list" and reply.startswith("550"):
            return TerminalError(f"{where}: path missing or not accessible ({reply})")
        if phase == "TLS handshake":
            return TerminalError(f"{where}: TLS handshake failed: server refused ({reply})")
        return TerminalError(f"{where}: {phase} refused ({reply})")
    if isinstance(exc, ftplib.error_temp):
        return TransientError(f"{where}: {phase} failed, temporary ({_reply(exc)})")
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or str(exc)
        return TerminalError(f"{where}: TLS handshake failed: certificate not trusted ({detail})")
    if isinstance(exc, ssl.SSLError) and phase in ("connect", "TLS handshake"):
        return TerminalError(f"{where}: TLS handshake failed ({exc.reason or exc})")
    if isinstance(exc, socket.gaierror):
        return TerminalError(f"{where}: cannot resolve host ({exc})")
    if isinstance(exc, ftplib.Error):  # error_reply, error_proto: an unexpected answer
        return TransientError(f"{where}: {phase}: unexpected server reply ({_reply(exc)})")
    if isinstance(exc, EOFError | OSError):
        detail = str(exc) or type(exc).__name__
        return TransientError(f"{where}: {phase}: connection lost or timed out ({detail})")
    return TerminalError(f"{where}: {phase} failed: {exc!r}")


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

    session.ftp.retrlines("LIST", take)
    session.ftp.voidcmd("TYPE I")  # retrlines switched to ASCII, where SIZE is refused
    return entries


def _resolve_link(session: _Session, path: str, entry: ListingEntry) -> ListingEntry:
    """A link to a file becomes a file with the target's size; links to folders are not
    followed (they could loop)."""
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


def _is_alive(session: _Session) -> bool:
    try:
        session.ftp.voidcmd("NOOP")
    except (ftplib.Error, OSError, EOFError):
        return False
    return True


def _quit(session: _Session) -> None:
    _quit_session(session.ftp)


def _quit_session(ftp: ftplib.FTP) -> None:
    with contextlib.suppress(OSError):
        ftp.close()  # no QUIT round trip: the connection may be half-broken
