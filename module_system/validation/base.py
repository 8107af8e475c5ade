"""The validator extension point: a local file in, a verdict out. No protocol knowledge."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel

from module_system.validation.reading import InputRefused, ReadLimits, open_binary

MAX_REPORTED_ERRORS = 100

__all__ = [
    "MAX_REPORTED_ERRORS", "InputRefused", "Issue", "IssueCollector", "ReadLimits", "Validator",
    "Verdict", "open_binary", "read_json_object",
]  # fmt: skip


@dataclass(frozen=True)
class Issue:
    """One problem found in a file. ``location`` is e.g. a JSON path or ``row 3, column 'id'``."""

    message: str
    location: str = ""
    reason: str = ""  # a short code for a problem with the file as a whole, e.g. too_large

    def as_dict(self) -> dict[str, str]:
        found = {"message": self.message, "location": self.location}
        return {**found, "reason": self.reason} if self.reason else found


@dataclass
class Verdict:
    """A validator's judgement of one file. ``error_count`` counts issues not listed too."""

    valid: bool
    validator: str
    issues: list[Issue] = field(default_factory=list)
    error_count: int = 0
    records: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "validator": self.validator,
            "error_count": self.error_count,
            "records": self.records,
            "errors": [issue.as_dict() for issue in self.issues],
        }


class IssueCollector:
    """Keeps the first ``limit`` issues and counts the rest."""

    def __init__(self, limit: int = MAX_REPORTED_ERRORS) -> None:
        self.limit = limit
        self.issues: list[Issue] = []
        self.count = 0

    def add(self, message: str, location: str = "") -> None:
        self.count += 1
        if len(self.issues) < self.limit:
            self.issues.append(Issue(message, location))

    def extend(self, other: IssueCollector) -> None:
        """Take ``other``'s issues and count after this one's."""
        self.issues.extend(other.issues[: max(0, self.limit - len(self.issues))])
        self.count += other.count

    def verdict(self, validator: str, records: int | None = None) -> Verdict:
        return Verdict(self.count == 0, validator, self.issues, self.count, records)


class Validator(ABC):
    """Base class of every validator.

    ``name`` is the key under a service's ``validation:`` block; ``suffixes`` are the file
    name endings it checks (a trailing ``.gz`` is looked through).

    ``reads_growing_files``: True only when the validator reads the file solely through
    :func:`open_binary`, which follows a download still being written; the pipeline then
    validates a big file while it downloads. Left False (plain ``open()``, a library that
    opens the path itself), the validator is given the file only once it is complete.
    """

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]
    options_model: ClassVar[type[BaseModel]]
    reads_growing_files: ClassVar[bool] = False

    def __init__(self, options: Any) -> None:
        self.options = options

    @classmethod
    def parse_options(cls, raw: Any, base_dir: Path) -> BaseModel:
        """Turn the registry's raw options into a typed, picklable options model."""
        return cls.options_model.model_validate(raw)

    @classmethod
    def from_options(cls, options: Any) -> Self:
        return cls(options)

    def accepts(self, name: str) -> bool:
        lowered = name.lower().removesuffix(".gz")
        return lowered.endswith(self.suffixes)

    @abstractmethod
    def validate(self, path: Path, name: str) -> Verdict:
        """Check the file at ``path`` (``name`` is its source key, for its type)."""


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object from ``path`` (a schema file), with errors that name ``what``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{what} file not found: {path.resolve()}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} file {path}: expected a JSON object")
    return data
