"""Parsing of FTP LIST (Unix and DOS) lines and MLSD facts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from module_system.sources.ftp_listing import (
    EntryKind,
    ListingEntry,
    parse_ftp_timestamp,
    parse_list_line,
    parse_mlsd_facts,
    parse_mlst_reply,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("-rw-r--r--   1 owner group     1234 Jan 15 10:30 sales report.csv",
         ListingEntry("sales report.csv", EntryKind.FILE, 1234,
                      datetime(2026, 1, 15, 10, 30, tzinfo=UTC))),
        # no year: a date "in the future" belongs to last year
        ("-rw-r--r--   1 owner group       10 Dec 24 23:59 xmas.csv",
         ListingEntry("xmas.csv", EntryKind.FILE, 10, datetime(2025, 12, 24, 23, 59, tzinfo=UTC))),
        ("-rw-r--r--   1 1000  1000        7 Jun  3  2021 old.csv",
         ListingEntry("old.csv", EntryKind.FILE, 7, datetime(2021, 6, 3, tzinfo=UTC))),
        ("-rw-r--r-- 1 ftp 99 Feb  1 08:00 no-group.csv",
         ListingEntry("no-group.csv", EntryKind.FILE, 99, datetime(2026, 2, 1, 8, 0, tzinfo=UTC))),
        ("drwxr-xr-x   2 owner group     4096 Mar  1 09:00 2026 archive",
         ListingEntry("2026 archive", EntryKind.DIR, 4096, datetime(2026, 3, 1, 9, 0, tzinfo=UTC))),
        ("lrwxrwxrwx   1 owner group       12 Mar  1 09:00 latest.csv -> a b.csv",
         ListingEntry("latest.csv", EntryKind.LINK, 12, datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
                      target="a b.csv")),
        ("01-15-26  03:04PM       <DIR>          Monthly Files",
         ListingEntry("Monthly Files", EntryKind.DIR, None,
                      datetime(2026, 1, 15, 15, 4, tzinfo=UTC))),
        ("12-31-2025  12:05AM              2048 year end.csv",
         ListingEntry("year end.csv", EntryKind.FILE, 2048,
                      datetime(2025, 12, 31, 0, 5, tzinfo=UTC))),
        ("03-01-26  09:15                  5 24h.csv",
         ListingEntry("24h.csv", EntryKind.FILE, 5, datetime(2026, 3, 1, 9, 15, tzinfo=UTC))),
    ],
)  # fmt: skip
def test_list_lines(line: str, expected: ListingEntry) -> None:
    assert parse_list_line(line, NOW) == expected


@pytest.mark.parametrize("line", ["total 12", "", "garbage line", "-rw-r--r-- broken"])
def test_lines_not_understood_are_none(line: str) -> None:
    assert parse_list_line(line, NOW) is None


def test_dot_entries_are_ignored() -> None:
    entry = parse_list_line("drwxr-xr-x   2 o g 4096 Mar  1 09:00 ..", NOW)
    assert entry is not None and entry.kind is EntryKind.OTHER


def test_mlsd_facts() -> None:
    entry = parse_mlsd_facts(
        "a b.csv", {"type": "file", "size": "42", "modify": "20260115103000.5"}
    )
    assert entry == ListingEntry(
        "a b.csv", EntryKind.FILE, 42, datetime(2026, 1, 15, 10, 30, 0, 500000, tzinfo=UTC), True
    )
    assert parse_mlsd_facts(".", {"type": "cdir"}).kind is EntryKind.OTHER
    assert parse_mlsd_facts("l", {"type": "OS.unix=slink:/x"}).kind is EntryKind.LINK
    assert parse_mlsd_facts("d", {"type": "dir"}).kind is EntryKind.DIR


def test_mlsd_unique_fact_identifies_a_folder_under_any_name() -> None:
    folder = parse_mlsd_facts("d", {"type": "dir", "unique": "801g2a"})
    link = parse_mlsd_facts("link-to-d", {"type": "dir", "unique": "801g2a"})
    assert folder.identity == link.identity == "801g2a"
    assert parse_mlsd_facts("e", {"type": "dir"}).identity is None


def test_mlst_reply_facts() -> None:
    reply = (
        "250-Listing /out going\r\n"
        " type=dir;Unique=801g2a;modify=20260115103000; /out going\r\n"
        "250 End MLST."
    )
    assert parse_mlst_reply(reply) == {
        "type": "dir",
        "unique": "801g2a",
        "modify": "20260115103000",
    }
    assert parse_mlst_reply("250 End MLST.") == {}


def test_timestamps() -> None:
    assert parse_ftp_timestamp("20260115103000") == datetime(2026, 1, 15, 10, 30, tzinfo=UTC)
    assert parse_ftp_timestamp("2026") is None
    assert parse_ftp_timestamp("20261315103000") is None
