"""Parsing FTP directory listings: MLSD facts, and LIST output in Unix and DOS formats.

MLSD (RFC 3659) is machine-readable and preferred. LIST output is meant for people and
varies by server, so it is parsed leniently:

- Unix ``ls -l`` style, with or without a group column, names with spaces, symlinks
  (``name -> target``) and the year-or-time date (``Jan 15 10:30`` for the last six
  months, ``Jan 15  2023`` before that);
- DOS/Windows (IIS) style: ``01-15-24  03:04PM  <DIR>  name`` or ``... 1234 name``.

A line neither format understands is skipped (and reported by the caller), never guessed.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime


class EntryKind(enum.Enum):
    FILE = "file"  # a regular file: a candidate item
    DIR = "dir"  # a folder: walked when recursive
    LINK = "link"  # a symbolic link: resolved by the caller (SIZE) before use
    OTHER = "other"  # devices, sockets, ``.`` and ``..``: ignored


@dataclass(frozen=True)
class ListingEntry:
    """One name in a directory. ``modified`` is UTC; ``exact_time`` is False when it came
    from a LIST date (minute or day precision, year sometimes inferred). ``identity`` is
    what the server says tells this object from every other (MLSD's ``unique`` fact): two
    names with one identity are one folder, e.g. a folder and a link to it."""

    name: str
    kind: EntryKind
    size: int | None = None
    modified: datetime | None = None
    exact_time: bool = False
    target: str | None = None
    identity: str | None = None


_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}

_UNIX = re.compile(
    r"^(?P<type>[-dlcbpsD])[-rwxsStTlL]{9}[+.@]?\s+\d+\s+"
    r"(?:\S+\s+){1,2}?"  # owner, and group when present
    r"(?P<size>\d+)\s+"
    r"(?P<month>[A-Za-z]{3})\s+(?P<day>\d{1,2})\s+"
    r"(?:(?P<hour>\d{1,2}):(?P<minute>\d{2})|(?P<year>\d{4}))"
    r" (?P<name>.+)$"
)
_DOS = re.compile(
    r"^(?P<month>\d{2})-(?P<day>\d{2})-(?P<year>\d{2}|\d{4})\s+"
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2})\s*(?P<ampm>[AaPp][Mm])?\s+"
    r"(?:(?P<dir><DIR>)|(?P<size>\d+))\s+(?P<name>.+)$"
)


def parse_mlsd_facts(name: str, facts: dict[str, str]) -> ListingEntry:
    """Build an entry from ``ftplib.FTP.mlsd`` output (fact names are lower-cased)."""
    kind_fact = facts.get("type", "").lower()
    if kind_fact == "file":
        kind = EntryKind.FILE
    elif kind_fact == "dir":
        kind = EntryKind.DIR
    elif "slink" in kind_fact or "symlink" in kind_fact:
        kind = EntryKind.LINK
    else:  # cdir, pdir, devices
        kind = EntryKind.OTHER
    size = facts.get("size")
    modify = facts.get("modify")
    return ListingEntry(
        name=name,
        kind=kind,
        size=int(size) if size and size.isdigit() else None,
        modified=parse_ftp_timestamp(modify) if modify else None,
        exact_time=bool(modify),
        identity=facts.get("unique") or None,
    )


def parse_mlst_reply(reply: str) -> dict[str, str]:
    """The facts of an ``MLST`` reply (``250-...``, `` type=dir;unique=801g2; /path``,
    ``250 End``), fact names lower-cased; empty when the reply holds none."""
    for line in reply.splitlines()[1:-1]:
        facts, _, _name = line.strip().partition(" ")
        pairs = (fact.partition("=") for fact in facts.split(";") if "=" in fact)
        return {key.lower(): value for key, _, value in pairs}
    return {}


def parse_ftp_timestamp(value: str) -> datetime | None:
    """``YYYYMMDDHHMMSS[.sss]`` (MLSD ``modify`` fact and MDTM replies), always UTC."""
    digits, _, fraction = value.strip().partition(".")
    if len(digits) != 14 or not digits.isdigit():
        return None
    try:
        stamp = datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    if fraction.isdigit():
        stamp = stamp.replace(microsecond=int(fraction[:6].ljust(6, "0")))
    return stamp


def parse_list_line(line: str, now: datetime | None = None) -> ListingEntry | None:
    """Parse one LIST line in Unix or DOS format; None for totals and unknown lines."""
    line = line.rstrip("\r\n")
    if not line or line.lower().startswith("total "):
        return None
    match = _UNIX.match(line)
    if match:
        return _unix_entry(match, now or datetime.now(UTC))
    match = _DOS.match(line)
    if match:
        return _dos_entry(match)
    return None


def _unix_entry(match: re.Match[str], now: datetime) -> ListingEntry | None:
    kind = {"-": EntryKind.FILE, "d": EntryKind.DIR, "D": EntryKind.DIR, "l": EntryKind.LINK}
    name, target = match["name"], None
    entry_kind = kind.get(match["type"], EntryKind.OTHER)
    if entry_kind is EntryKind.LINK and " -> " in name:
        name, target = name.split(" -> ", 1)
    if name in (".", ".."):
        entry_kind = EntryKind.OTHER
    return ListingEntry(
        name=name,
        kind=entry_kind,
        size=int(match["size"]),
        modified=_unix_date(match, now),
        target=target,
    )


def _unix_date(match: re.Match[str], now: datetime) -> datetime | None:
    month = MONTHS.get(match["month"].lower())
    if month is None:
        return None
    day = int(match["day"])
    try:
        if match["year"]:
            return datetime(int(match["year"]), month, day, tzinfo=UTC)
        hour, minute = int(match["hour"]), int(match["minute"])
        # "Recent" dates carry no year: this year, unless that would be in the future.
        stamp = datetime(now.year, month, day, hour, minute, tzinfo=UTC)
        if (stamp - now).days > 1:
            stamp = stamp.replace(year=now.year - 1)
        return stamp
    except ValueError:  # e.g. Feb 29 in a year without one
        return None


def _dos_entry(match: re.Match[str]) -> ListingEntry | None:
    year = int(match["year"])
    if year < 100:
        year += 2000 if year < 70 else 1900
    hour = int(match["hour"])
    ampm = (match["ampm"] or "").upper()
    if ampm == "PM" and hour != 12:
        hour += 12
    elif ampm == "AM" and hour == 12:
        hour = 0
    try:
        modified = datetime(
            year, int(match["month"]), int(match["day"]), hour, int(match["minute"]), tzinfo=UTC
        )
    except ValueError:
        modified = None
    is_dir = match["dir"] is not None
    return ListingEntry(
        name=match["name"],
        kind=EntryKind.DIR if is_dir else EntryKind.FILE,
        size=None if is_dir else int(match["size"]),
        modified=modified,
    )
