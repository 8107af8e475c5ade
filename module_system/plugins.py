"""Lazy registries of extension points: built-in entries plus installed entry points.

Built-ins are ``"module:attr"`` strings so that importing the registry does not import
every protocol library. Third-party packages add entries through an entry-point group; a
plugin that fails to load is reported with a warning and otherwise ignored.
"""

from __future__ import annotations

import importlib
import logging
import threading
from importlib.metadata import entry_points
from typing import Any

from module_system._optional import missing_extra_for

log = logging.getLogger(__name__)


class PluginRegistry:
    """Names mapped to classes, resolved on first use."""

    def __init__(self, group: str, builtins: dict[str, str], kind: str = "plugin") -> None:
        self.group = group
        self.kind = kind  # "source type", "validator": for error messages
        self._targets: dict[str, str] = dict(builtins)
        self._loaded: dict[str, Any] = {}
        self._entry_points_read = False
        self._lock = threading.Lock()
        self._reading = threading.Lock()

    def register(self, name: str, target: Any) -> None:
        """Add ``target`` (a class, or a ``"module:attr"`` string) under ``name``."""
        with self._lock:
            if isinstance(target, str):
                self._targets[name] = target
                self._loaded.pop(name, None)
            else:
                self._loaded[name] = target

    def names(self) -> list[str]:
        self._read_entry_points()
        return sorted(set(self._targets) | set(self._loaded))

    def get(self, name: str) -> Any:
        """The class registered as ``name``, or None when there is none."""
        self._read_entry_points()
        with self._lock:
            if name in self._loaded:
                return self._loaded[name]
            target = self._targets.get(name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # e.g. paramiko for "sftp": name the extra
            missing = missing_extra_for(exc, f"the '{name}' {self.kind}")
            if missing is None:
                raise
            raise missing from exc
        obj = getattr(module, attr)
        with self._lock:
            self._loaded[name] = obj
        return obj

    def _read_entry_points(self) -> None:
        with self._reading:  # once, even when several threads ask at the same time
            if self._entry_points_read:
                return
            for ep in entry_points(group=self.group):
                try:
                    self.register(ep.name, ep.load())
                except Exception as exc:  # a broken plugin must not break the tool
                    log.warning("ignoring plugin %r from %s: %s", ep.name, self.group, exc)
            self._entry_points_read = True


# The two extension points live here, below both the config loader that looks types up and
# the packages that implement them, so that neither has to import the other.
SOURCE_TYPES = PluginRegistry(
    "module_system.sources",
    kind="source type",
    builtins={
        "s3": "module_system.sources.s3:S3Source",
        "web": "module_system.sources.web:WebSource",
        "api": "module_system.sources.api:ApiSource",
        "ftp": "module_system.sources.ftp:FtpSource",
        "sftp": "module_system.sources.sftp:SftpSource",
    },
)

VALIDATORS = PluginRegistry(
    "module_system.validators",
    kind="validator",
    builtins={
        "json_schema": "module_system.validation.json_schema:JsonSchemaValidator",
        "csv": "module_system.validation.csv:CsvValidator",
        "html": "module_system.validation.html:HtmlValidator",
    },
)
