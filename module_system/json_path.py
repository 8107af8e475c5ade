"""Dotted paths into parsed JSON, as used in configuration: ``data.items``, ``meta.next``,
``results.0.id``. A path names object keys; a segment of digits indexes a list.

>>> lookup({"data": {"items": [1, 2]}}, "data.items")
[1, 2]
>>> lookup({"data": {}}, "data.items") is MISSING
True
"""

from __future__ import annotations

from typing import Any, Final

MISSING: Final = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
ROOT = "$"  # the whole document


def lookup(document: Any, path: str) -> Any:
    """The value at ``path`` in ``document``, or :data:`MISSING` when it is not there."""
    value = document
    for segment in split(path):
        if isinstance(value, dict) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return MISSING
    return value


def split(path: str) -> list[str]:
    """``"data.items"`` → ``["data", "items"]``; ``"$"`` and ``""`` → ``[]``."""
    path = path.removeprefix(ROOT).lstrip(".")
    return [segment for segment in path.split(".") if segment] if path else []


def display(path: str) -> str:
    """The path as shown in error locations: ``data.items`` → ``$.data.items``."""
    return ROOT + "".join(f"[{s}]" if s.isdigit() else f".{s}" for s in split(path))
