"""What FTP and SFTP sources share: the ``source:`` keys of a file server, and
:class:`FileServerSource`, which walks the remote folder, builds the items, resumes and
copies transfers over a pool of protocol connections.

A protocol subclass supplies only hooks, generic over its connection type ``C`` (as
Scrapy's ``BlockingFeedStorage`` leaves each storage one method):

- ``_connect`` / ``_disconnect`` / ``_is_alive``: one pooled connection;
- ``_find_root``: the server's absolute form of ``path``;
- ``_list_folder``: one folder's entries; ``_settle``: resolve a link or an inexact
  time, asked only for the entries the job wants;
- ``_reading``: a read of one file from an offset; ``_can_resume``;
- ``_translate``: a library error into a transient or terminal one.
"""

from __future__ import annotations

import functools
import posixpath
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Generic, NamedTuple, Self, TypeVar

from pydantic import Field, SecretStr, field_validator

from module_system.config.models import StrictModel
from module_system.errors import JobCancelled, ModuleSystemError, TransientError
from module_system.sources.base import RemoteItem, Source, SourceContext
from module_system.sources.connection_pool import ConnectionPool
from module_system.sources.ftp_listing import EntryKind, ListingEntry
from module_system.sources.globs import wanted

C = TypeVar("C")
CHUNK = 256 * 1024

Reader = Callable[[int], bytes]  # read(at most n bytes) -> b"" at the end


class FileServerConfig(StrictModel):
    """Keys common to ``type: ftp`` and ``type: sftp`` services."""

    host: str = Field(min_length=1, description="server name or address")
    port: int = Field(ge=1, le=65535)  # each protocol gives its default
    username: str = Field("anonymous", description="login name")
    password: SecretStr = Field(
        SecretStr(""), description="login password; a secret, masked in logs and reports"
    )
    path: str = Field("/", description="remote directory; item keys are relative to it")
    recursive: bool = Field(True, description="walk sub-folders")
    include: list[str] = Field(
        default_factory=lambda: ["*"], description="globs on the relative path (* matches / too)"
    )
    exclude: list[str] = Field(default_factory=list, description="globs of paths to leave out")
    connect_timeout: float = Field(30.0, gt=0, description="seconds to connect and log in")
    data_timeout: float = Field(60.0, gt=0, description="seconds a transfer may stall")
    max_connections: int = Field(4, ge=1, le=64, description="connections to the server")

    @field_validator("password", mode="before")
    @classmethod
    def _none_is_empty(cls, value: object) -> object:
        return "" if value is None else value

    @field_validator("path")
    @classmethod
    def _normalise_path(cls, value: str) -> str:
        value = value.strip() or "/"
        return value if value == "/" else value.rstrip("/")

    def wanted(self, relative: str) -> bool:
        """True when ``relative`` matches ``include`` and no ``exclude`` glob."""
        return wanted(relative, self.include, self.exclude)


class Root(NamedTuple):
    """The walked folder as the server names it, and its identity where the server gives
    one (MLST's ``unique`` fact)."""

    path: str
    identity: str | None = None


class FileServerSource(Source, Generic[C]):
    """Every file below ``path`` (recursively by default) matching ``include`` and not
    ``exclude``. Item keys are paths relative to ``path``; versions are size+mtime."""

    config: FileServerConfig

    def __init__(self, config: FileServerConfig, context: SourceContext) -> None:
        self.config = config
        self.context = context
        self._retrier = context.make_retrier()
        self._pool: ConnectionPool[C] = ConnectionPool(
            self._connect, self._disconnect, config.max_connections, self._is_alive,
            cancel=context.cancel, deadline=context.deadline,
        )  # fmt: skip
        self._root: str | None = None

    @classmethod
    def from_config(cls, config: Any, context: SourceContext) -> Self:
        return cls(config, context)

    def where(self, path: str = "") -> str:
        """The server and path for messages: never the password."""
        cfg = self.config
        return f"{self._scheme()}://{cfg.username}@{cfg.host}:{cfg.port}{path}"

    def _scheme(self) -> str:
        return self.type_name

    # --- protocol hooks

    @abstractmethod
    def _connect(self) -> C:
        """Open and log in one connection."""

    @abstractmethod
    def _disconnect(self, conn: C) -> None:
        """Close a connection, which may be half broken."""

    @abstractmethod
    def _is_alive(self, conn: C) -> bool:
        """Whether an idle connection still works (checked before reuse)."""

    @abstractmethod
    def _find_root(self, conn: C, path: str) -> Root:
        """The server's absolute name of ``path`` (a relative one is below the login)."""

    @abstractmethod
    def _list_folder(self, conn: C, folder: str) -> list[ListingEntry]:
        """Every name in ``folder``, as files, folders, links and others."""

    def _settle(self, conn: C, path: str, entry: ListingEntry) -> ListingEntry:
        """A wanted entry made usable: a link to a file becomes that file, a link to
        anything else OTHER (never walked). Default: as listed."""
        return entry

    @abstractmethod
    def _reading(
        self, conn: C, path: str, offset: int, size: int | None
    ) -> AbstractContextManager[Reader]:
        """Open ``path`` for reading from byte ``offset``."""

    def _can_resume(self, conn: C) -> bool:
        """Whether a read can start at an offset on this connection."""
        return True

    @abstractmethod
    def _translate(self, exc: Exception, where: str, phase: str) -> ModuleSystemError:
        """The transient or terminal error for a library error during ``phase``."""

    # --- listing

    def list_items(self) -> Iterator[RemoteItem]:
        root = self._retrier.call(self._locate_root, f"list {self.where(self.config.path)}")
        seen = {root.identity or posixpath.normpath(root.path): root.path}
        folders = [root.path]
        while folders:
            folder = folders.pop()
            entries = self._retrier.call(
                functools.partial(self._listed, folder), f"list {self.where(folder)}"
            )
            for entry in entries:
                if self.context.cancel.is_set():
                    return
                path = posixpath.join(folder, entry.name)
                if entry.kind is EntryKind.DIR:
                    if self.config.recursive and self._first_visit(seen, path, entry):
                        folders.append(path)
                elif entry.kind is EntryKind.FILE:
                    yield self._item(path, entry)

    def _locate_root(self) -> Root:
        path = self.config.path
        with self._translated(path, "list"), self._pool.connection() as conn:
            root = self._find_root(conn, path)
        self._root = root.path
        return root

    def _listed(self, folder: str) -> list[ListingEntry]:
        """One folder listed whole on one borrowed connection (so ``max_connections: 1``
        cannot deadlock against the fetches). Files the job would skip cost no further
        round trips."""
        phase = "list" if folder == self._root else "list folder"
        with self._translated(folder, phase), self._pool.connection() as conn:
            settled = []
            for entry in self._list_folder(conn, folder):
                path = posixpath.join(folder, entry.name)
                if entry.kind is EntryKind.DIR:
                    settled.append(entry)
                elif entry.kind is not EntryKind.OTHER and self._wanted(path):
                    settled.append(self._settle(conn, path, entry))
            return settled

    def _first_visit(self, seen: dict[str, str], path: str, entry: ListingEntry) -> bool:
        """False for a folder already walked under another name: a server that lists a
        link to a folder as a folder (MLSD follows links) must not make the walk loop.
        A folder is known by the server's ``unique`` fact, else by its normalised path."""
        identity = entry.identity or posixpath.normpath(path)
        first = seen.setdefault(identity, path)
        if first == path:
            return True
        self.context.logger.warning(
            "%s is the folder %s again (a link?): not walked twice", self.where(path), first
        )
        return False

    def _wanted(self, path: str) -> bool:
        assert self._root is not None
        return self.config.wanted(relative_key(self._root, path))

    def _item(self, path: str, entry: ListingEntry) -> RemoteItem:
        assert self._root is not None
        return RemoteItem(
            key=relative_key(self._root, path),
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
        """Download ``item``; a partial ``dest`` left by a dropped transfer is continued
        where the protocol can start a read at an offset."""
        path: str = item.extra["path"]
        with self._translated(path, "download"), self._pool.connection() as conn:
            offset = dest.stat().st_size if dest.exists() else 0
            resume = 0 < offset < (item.size or 0) and self._can_resume(conn)
            with (
                dest.open("ab" if resume else "wb") as out,
                self._reading(conn, path, offset if resume else 0, item.size) as read,
            ):
                self._copy(read, out, path)
        if resume:
            self.context.logger.info("%s: resumed at byte %d", self.where(path), offset)

    def _copy(self, read: Reader, out: IO[bytes], path: str) -> None:
        while chunk := read(CHUNK):
            if self.context.cancel.is_set():
                raise JobCancelled(f"{self.where(path)}: cancelled during download")
            out.write(chunk)

    @contextmanager
    def _translated(self, path: str, phase: str) -> Iterator[None]:
        """Library errors (``phase`` names the step: connect, list, download) become
        transient or terminal ones that name the server and path."""
        try:
            yield
        except ModuleSystemError:
            raise
        except Exception as exc:
            raise self._translate(exc, self.where(path), phase) from exc

    def close(self) -> None:
        self._pool.close()


def relative_key(root: str, path: str) -> str:
    """``/outgoing/a b/c.csv`` under ``/outgoing`` → ``a b/c.csv``."""
    return posixpath.relpath(path, root) if root != "/" else path.lstrip("/")


def file_version(size: int | None, modified: datetime | None) -> str | None:
    """size+mtime when both are known; otherwise None and the content hash decides."""
    if size is None or modified is None:
        return None
    return f"{size}:{modified.isoformat()}"


def connection_error(exc: BaseException, where: str, phase: str) -> TransientError:
    """A dropped or stalled connection: worth retrying (a transfer resumes)."""
    detail = str(exc) or type(exc).__name__
    reason = "timeout" if isinstance(exc, TimeoutError) else "connection_lost"
    return TransientError(
        f"{where}: {phase}: connection lost or timed out ({detail})", reason=reason
    )
