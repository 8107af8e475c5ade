"""Items made of parts: one NDJSON object whose lines are items of their own (the API
source's batches of pages list their pages in ``item.extra["parts"]``, one per line).

A valid batch lands whole, as any item. An invalid one is split here: each line is
validated alone; the invalid lines land on their own (so each goes to quarantine with its
own reasons, as any invalid item), and the valid lines are written back, together, to land
under the batch's key. Only the failure path pays for this.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from module_system.sources import RemoteItem
from module_system.validation.suite import ValidationSuite

PARTS = "parts"  # in an item's extra: the items its lines are, in line order
LOCAL = "local"  # in a part's extra: its bytes are already in the file it is landed from


def split_parts(
    item: RemoteItem,
    path: Path,
    suite: ValidationSuite,
    land_apart: Callable[[RemoteItem, Path], None],
) -> RemoteItem:
    """Hand each invalid line of ``path`` to ``land_apart`` (as its part, in a file of its
    own) and leave the valid ones in ``path``; return the item ``path`` now holds: the
    batch with its valid parts or, when none was valid, the last invalid part."""
    kept_path = path.with_name(path.name + ".kept")
    kept, apart = _sort_lines(item.extra[PARTS], path, kept_path, suite)
    if kept:
        kept_path.replace(path)
        details = {**(item.extra.get("details") or {}), PARTS: [p.extra["details"] for p in kept]}
        whole = RemoteItem(item.key, item.uri, path.stat().st_size, item.version,
                           item.modified, extra={"details": details})  # fmt: skip
    else:
        kept_path.unlink()
        whole, last_path = apart.pop()
        last_path.replace(path)
    for part, part_path in apart:
        land_apart(part, part_path)
    return whole


def _sort_lines(
    parts: list[RemoteItem], path: Path, kept_path: Path, suite: ValidationSuite
) -> tuple[list[RemoteItem], list[tuple[RemoteItem, Path]]]:
    """Valid lines go to ``kept_path``; each invalid one to a file of its own."""
    kept: list[RemoteItem] = []
    apart: list[tuple[RemoteItem, Path]] = []
    with path.open("rb") as lines, kept_path.open("wb") as out:
        for number, (part, line) in enumerate(zip(parts, lines, strict=True)):
            part_path = path.with_name(f"{path.name}.part{number:06d}")
            part_path.write_bytes(line)
            if suite.validate(part_path, part.key).valid:
                out.write(line)
                kept.append(part)
                part_path.unlink()
            else:
                local = RemoteItem(part.key, part.uri, len(line), part.version, part.modified,
                                   extra={**part.extra, LOCAL: True})  # fmt: skip
                apart.append((local, part_path))
    return kept, apart
