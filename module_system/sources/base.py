"""The source extension point: list what is there, fetch one item to a local file.

A source knows its protocol and nothing else: validation, landing, state and retries
around it belong to the pipeline. Implement :meth:`Source.list_items` and
:meth:`Source.fetch`; the other hooks are optional no-ops.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel

from module_system.aws import CopySource
from module_system.retry import Retrier

if TYPE_CHECKING:
    import logging

    from module_system.config.models import ExtractConfig, RetryConfig
    from module_system.state.store import CursorStore


@dataclass(frozen=True)
class RemoteItem:
    """One file (or page, or response) a source offers.

    ``key`` is the item's path relative to the source root with ``/`` separators; it
    becomes the tail of the landing key and identifies the item in the state store.
    ``version`` is what tells "changed" from "unchanged" (an ETag, size+mtime); None means
    the source cannot tell, so the content hash decides.
    """

    key: str
    uri: str
    size: int | None = None
    version: str | None = None
    modified: datetime | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class SourceContext:
    """What a source may use from the job around it."""

    service_id: str
    job_id: str
    run_id: str
    retry: RetryConfig
    cursors: CursorStore
    logger: logging.Logger | logging.LoggerAdapter[Any]
    cancel: threading.Event = field(default_factory=threading.Event)
    full_refresh: bool = False
    extract: ExtractConfig | None = None  # the service's ``extract:`` block, if any
    retrier: Retrier | None = None  # the job's: retries made here count in its report
    deadline: float | None = None  # time.monotonic() when the job times out; waits end there

    def make_retrier(self) -> Retrier:
        """The job's retrier, or one of the service's retry settings outside a job."""
        return self.retrier or Retrier(self.retry, self.cancel)


class Source(ABC):
    """Base class of every source type.

    Subclasses set ``type_name`` (the registry key, also the ``data/{type}/`` folder),
    ``config_model`` (the pydantic model of their ``source:`` block) and ``landing_area``.
    """

    type_name: ClassVar[str]
    config_model: ClassVar[type[BaseModel]]
    landing_area: ClassVar[str] = "validated"

    @classmethod
    @abstractmethod
    def from_config(cls, config: Any, context: SourceContext) -> Self:
        """Build the source from its typed ``source:`` block."""

    @abstractmethod
    def list_items(self) -> Iterator[RemoteItem]:
        """Yield every item the job should consider, lazily."""

    @abstractmethod
    def fetch(self, item: RemoteItem, dest: Path) -> None:
        """Write ``item``'s bytes to ``dest``, streaming: memory must stay bounded.

        Raise :class:`~module_system.errors.TransientError` for failures worth retrying and
        :class:`~module_system.errors.ItemVanished` when the item is gone.
        """

    @classmethod
    def adapt_validation(cls, config: Any, validation: dict[str, Any]) -> dict[str, Any]:
        """Adjust the service's parsed validator options to what this source lands (the API
        source tells the JSON Schema validator where records sit). Default: unchanged."""
        return validation

    def writes_in_place(self, item: RemoteItem) -> bool:
        """True when :meth:`fetch` writes ``dest`` itself, front to back (no temp file
        renamed over it, no out-of-order ranges). Only then may the pipeline hash, check
        and upload a big file while it downloads. Default: False (checked afterwards)."""
        return False

    def copy_source(self, item: RemoteItem) -> CopySource | None:
        """Where the last fetched bytes of ``item`` can be copied from server-side, if
        anywhere; asked once after each fetch. Default: nowhere."""
        return None

    def listed_copy_source(self, item: RemoteItem) -> CopySource | None:
        """Where the listed version of ``item`` can be copied from server-side, for a copy
        made while it downloads (a different version fetched is caught by the checksums).
        Default: nowhere."""
        return None

    def commit(self) -> None:
        """Called once after every item of a successful job has landed (e.g. save a cursor)."""

    def close(self) -> None:
        """Release connections. Called once, also when the job fails."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
