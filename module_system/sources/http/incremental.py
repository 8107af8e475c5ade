"""Incremental runs: start from the highest ``cursor_field`` value the last successful run
saw, and save the new highest only once every page of this run has landed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import Field

from module_system import json_path
from module_system.config.models import StrictModel
from module_system.sources.http.pagination import PageRequest
from module_system.state.store import CursorStore


class IncrementalConfig(StrictModel):
    """``incremental: {cursor_field: updated_at, param: since, initial: "2026-01-01T00:00:00Z"}``.

    ``cursor_field`` is a dotted path into each record; ``param`` the query parameter that
    carries the start value; ``initial`` the start of the very first run.
    """

    cursor_field: str = Field(
        description="dotted path into each record; the highest value is saved"
    )
    param: str = Field(description="query parameter that carries the start value")
    initial: str | None = Field(
        None, description="start value of the first run (and of --full-refresh); unset: not sent"
    )


class IncrementalCursor:
    """Tracks the highest cursor value over the records of one run."""

    def __init__(self, config: IncrementalConfig, store: CursorStore, full_refresh: bool) -> None:
        self.config, self.store = config, store
        saved = None if full_refresh else store.get(self.name)
        self.start: Any = saved if saved is not None else config.initial
        self.highest: Any = None

    @property
    def name(self) -> str:
        return f"incremental:{self.config.cursor_field}"

    def apply(self, request: PageRequest) -> None:
        if self.start is not None:
            request.params[self.config.param] = self.start

    def observe(self, records: list[Any]) -> None:
        for record in records:
            value = json_path.lookup(record, self.config.cursor_field)
            if value is json_path.MISSING or value is None or isinstance(value, bool):
                continue
            if self.highest is None or sort_key(value) > sort_key(self.highest):
                self.highest = value

    def save(self) -> Any:
        """Store the highest value seen, never moving backwards; return what is stored."""
        if self.highest is None:
            return self.start
        if self.start is not None and sort_key(self.highest) <= sort_key(self.start):
            return self.start
        self.store.set(self.name, str(self.highest))
        return self.highest


def sort_key(value: Any) -> tuple[int, Any]:
    """Order numbers as numbers and ISO-8601 timestamps as instants (``Z`` and offsets
    compared correctly, naive ones taken as UTC); other strings as text."""
    if isinstance(value, int | float):
        return (0, float(value))
    text = str(value)
    try:
        return (0, float(text))
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return (2, text)
    return (1, moment if moment.tzinfo else moment.replace(tzinfo=UTC))
