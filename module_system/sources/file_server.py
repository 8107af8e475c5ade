"""What FTP and SFTP sources share: the ``source:`` keys of a file server, which files
are wanted, and how a remote path becomes an item key and version."""

from __future__ import annotations

import fnmatch
import posixpath
from datetime import datetime

from pydantic import Field, SecretStr, field_validator

from module_system.config.models import StrictModel


class FileServerConfig(StrictModel):
    """Keys common to ``type: ftp`` and ``type: sftp`` services."""

    host: str = Field(min_length=1)
    username: str = "anonymous"
    password: SecretStr = SecretStr("")
    path: str = Field("/", description="remote directory; item keys are relative to it")
    recursive: bool = True
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)
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

        def matches(patterns: list[str]) -> bool:
            return any(fnmatch.fnmatchcase(relative, p) for p in patterns)

        return matches(self.include) and not matches(self.exclude)


def relative_key(root: str, path: str) -> str:
    """``/outgoing/a b/c.csv`` under ``/outgoing`` → ``a b/c.csv``."""
    return posixpath.relpath(path, root) if root != "/" else path.lstrip("/")


def file_version(size: int | None, modified: datetime | None) -> str | None:
    """size+mtime when both are known; otherwise None and the content hash decides."""
    if size is None or modified is None:
        return None
    return f"{size}:{modified.isoformat()}"
